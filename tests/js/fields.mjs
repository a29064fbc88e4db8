// The field sweep's discord.js side (tests/gateway/test_library_fields.py): greenroom's
// real answers and events arrive as one JSON object on stdin; each is loaded through
// discord.js's own gateway packet handlers and structures, as a bot would load it from
// Discord, and a few values it derives are checked. Prints {name: "ok" | error} as JSON.
//
//   node fields.mjs < payloads.json

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Client, GatewayIntentBits, Invite, Webhook } = require('discord.js');
// discord.js's gateway packet handlers (READY, GUILD_CREATE, MESSAGE_CREATE, ...), as its
// WebSocketManager calls them (not exported: required beside discord.js's own entry point)
const handlers = createRequire(require.resolve('discord.js'))('./client/websocket/handlers/index.js');

const p = JSON.parse(readFileSync(0, 'utf8'));
const client = new Client({ intents: Object.values(GatewayIntentBits).filter(Number.isInteger) });
const shard = { id: 0, checkReady() {} };
const results = {};

function check(name, load) {
  try {
    load();
    results[name] = 'ok';
  } catch (error) {
    results[name] = String(error?.stack ?? error).split('\n').slice(0, 4).join(' | ');
  }
}

function expect(condition, what) {
  if (!condition) throw new Error(`unexpected: ${what}`);
}

// RICH_MESSAGE_CREATE, DM_MESSAGE_CREATE...: MESSAGE_CREATEs of the kind named
const packet = (name) => handlers[name.endsWith('_MESSAGE_CREATE') ? 'MESSAGE_CREATE' : name](
  client, { d: structuredClone(p[name]) }, shard);

check('READY', () => {
  packet('READY');
  expect(client.user.id === p.READY.user.id && client.user.bot, 'client.user');
  expect(client.application.id === p.READY.application.id, 'client.application');
});
const guild = () => client.guilds.cache.get(p.GUILD_CREATE.id);
const channel = () => guild().channels.cache.get(p.channel.id);
check('GUILD_CREATE', () => {
  packet('GUILD_CREATE');
  const g = guild();
  expect(g.available && g.name === p.GUILD_CREATE.name, 'guild');
  expect(g.channels.cache.size >= 1 && g.roles.everyone && g.members.me, 'guild parts');
  expect(g.joinedTimestamp > 0 && g.ownerId === p.GUILD_CREATE.owner_id, 'guild fields');
});
check('MESSAGE_CREATE', () => {
  packet('MESSAGE_CREATE');
  const m = channel().messages.cache.get(p.MESSAGE_CREATE.id);
  expect(m.content === 'hello' && m.author.username && m.member?.joinedTimestamp > 0, 'message');
  expect(m.createdTimestamp > 0 && m.webhookId === null, 'message fields');
});
check('MESSAGE_UPDATE', () => {
  packet('MESSAGE_UPDATE');
  const m = channel().messages.cache.get(p.MESSAGE_UPDATE.id);
  expect(m.content === 'hi' && m.editedTimestamp > 0, 'edited message');
});
check('TYPING_START', () => packet('TYPING_START'));
check('CHANNEL_CREATE', () => {
  packet('CHANNEL_CREATE');
  expect(guild().channels.cache.get(p.channel_post.id)?.name === 'builds', 'new channel');
});
check('WEBHOOKS_UPDATE', () => packet('WEBHOOKS_UPDATE'));
check('WEBHOOK_MESSAGE_CREATE', () => {
  packet('WEBHOOK_MESSAGE_CREATE');
  const m = channel().messages.cache.get(p.WEBHOOK_MESSAGE_CREATE.id);
  expect(m.webhookId === p.webhook_created.id && m.author.id === p.webhook_created.id, 'webhook ids');
  expect(m.author.username === 'deploy' && m.author.bot, 'webhook author');
});
check('RICH_MESSAGE_CREATE', () => {
  packet('RICH_MESSAGE_CREATE');
  const m = channel().messages.cache.get(p.rich_message.id);
  expect(m.mentions.users.has(p.READY.user.id) && m.embeds[0].title === 'Build 12', 'rich message');
  expect(m.embeds[0].fields[0].name === 'branch' && m.embeds[0].footer.text === 'ci', 'embed parts');
});
check('REPLY_MESSAGE_CREATE', () => {
  packet('REPLY_MESSAGE_CREATE');
  const m = channel().messages.cache.get(p.reply_message.id);
  expect(m.reference?.messageId === p.rich_message.id && m.type === 19, 'reply');
});
check('MESSAGE_REACTION_ADD', () => {
  packet('MESSAGE_REACTION_ADD');
  const reaction = channel().messages.cache.get(p.rich_message.id).reactions.cache.get('👍');
  expect(reaction?.count === 1 && reaction.me, 'reaction');
});
check('FILE_MESSAGE_CREATE', () => {
  packet('FILE_MESSAGE_CREATE');
  const m = channel().messages.cache.get(p.file_message.id);
  expect(m.attachments.first()?.name === 'build.log', 'attachment');
});
check('CHANNEL_UPDATE', () => {
  packet('CHANNEL_UPDATE');
  const builds = guild().channels.cache.get(p.channel_post.id);
  expect(builds.permissionOverwrites.cache.get(p.other_user.id)?.allow.has('ViewChannel'), 'overwrite');
});
check('GUILD_MEMBER_ADD', () => {
  const before = guild().memberCount;
  packet('GUILD_MEMBER_ADD');
  expect(guild().memberCount === before + 1 && guild().members.cache.get(p.GUILD_MEMBER_ADD.user.id), 'member added');
});
check('GUILD_MEMBER_REMOVE', () => {
  packet('GUILD_MEMBER_REMOVE');
  expect(!guild().members.cache.has(p.GUILD_MEMBER_REMOVE.user.id), 'member removed');
});
check('dm_channel', () => {
  const dm = client.channels._add(p.dm_channel);
  expect(dm.isDMBased() && dm.recipientId === p.other_user.id, 'DM channel');
});
check('DM_MESSAGE_CREATE', () => {
  packet('DM_MESSAGE_CREATE');
  expect(client.channels.cache.get(p.dm_channel.id).messages.cache.get(p.dm_message.id)?.content === 'a DM', 'DM message');
});
check('MESSAGE_DELETE', () => {
  packet('MESSAGE_DELETE');
  expect(!channel().messages.cache.has(p.MESSAGE_DELETE.id), 'deleted');
});

check('user', () => expect(client.users._add(p.user, false).username === p.user.username, 'user'));
check('other_user', () => expect(client.users._add(p.other_user, false).username === 'alice', 'user'));
check('channel_with_overwrites', () => {
  const builds = client.channels._add(p.channel_with_overwrites, guild(), { cache: false });
  expect(builds.permissionOverwrites.cache.size === 1, 'overwrites');
});
check('guild', () => expect(client.guilds._add(p.guild, false).name === p.guild.name, 'guild'));
check('channels', () => {
  for (const data of [...p.channels, p.channel, p.channel_post]) {
    expect(client.channels._add(data, guild(), { cache: false }).name === data.name, 'channel');
  }
});
check('members', () => {
  for (const data of p.members) expect(guild().members._add(data, false).joinedTimestamp > 0, 'member');
});
check('roles', () => {
  for (const data of p.guild.roles) expect(guild().roles._add(data, false).name === data.name, 'role');
});
check('messages', () => {
  for (const data of [p.message_post, p.message_patch, p.rich_message, p.reply_message,
    p.reacted_message, p.file_message, ...p.messages]) {
    expect(channel().messages._add(data, false).author.username, 'message author');
  }
});
check('webhook_message', () => {
  const m = channel().messages._add(p.webhook_message, false);
  expect(m.webhookId === p.webhook_created.id && m.author.username === 'deploy', 'webhook message');
});
check('application', () => {
  client.application._patch(p.application);
  expect(client.application.name && client.application.approximateGuildCount === 1, 'application');
});
check('invites', () => {
  for (const data of [p.invite_created, p.invite]) {
    const invite = new Invite(client, data);
    expect(invite.code === data.code && invite.guild?.id === p.guild.id, 'invite');
  }
});
check('webhook_created', () => {
  const hook = new Webhook(client, p.webhook_created);
  expect(hook.token === p.webhook_created.token && hook.channelId === p.channel.id, 'webhook');
  expect(hook.owner?.id === p.READY.user.id && hook.isIncoming(), 'webhook owner');
});
check('webhooks', () => {
  for (const data of [p.webhook, p.webhook_by_token]) {
    expect(new Webhook(client, data).name === 'ci', 'webhook');
  }
});

client.destroy();
process.stdout.write(JSON.stringify(results));
