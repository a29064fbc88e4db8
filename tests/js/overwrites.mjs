// Channel permission overwrites with discord.js 14, unmodified but for its base URL,
// driven by tests/gateway/test_overwrites_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<owner bot> GREENROOM_HELPER_TOKEN=<second bot> \
//     node overwrites.mjs <rest api base> <channel id> <second bot's id>
//
// Two bots in one process: the owner's denies @everyone AddReactions
// (permissionOverwrites.edit) and the second bot ViewChannel (permissionOverwrites.create);
// both see the ChannelUpdate and compute permissionsFor as the server decides; the
// second bot gets no more of the channel's messages (another channel's still), and read,
// history and send are refused; deleting its overwrite gives the channel back. Every
// step is one JSON line on stdout; an error is an "error" line, then exit 1.

import { Events, GatewayIntentBits } from 'discord.js';

import { botClient, eventWaiters, login, refusal, runStepsWhenReady, say, scriptArgs } from './common.mjs';

const { api, token, channelId, helperId, GREENROOM_HELPER_TOKEN: helperToken } = scriptArgs(
  'overwrites.mjs', ['channelId', 'helperId'], ['GREENROOM_HELPER_TOKEN']);

// Events of both bots, each awaited by the step that caused it.
const { arrived, next } = eventWaiters();

function bot(name, intents) {
  const client = botClient(api, { intents });
  client.on(Events.MessageCreate, m => arrived(`${name}:message`,
    { content: m.content, channel: m.channelId }));
  client.on(Events.ChannelUpdate, (_, c) => arrived(`${name}:update`, c));
  return client;
}

const common = [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages,
  GatewayIntentBits.MessageContent];
const owner = bot('owner', [...common, GatewayIntentBits.GuildMembers]);
const helper = bot('helper', common);

const overwritesOf = c => [...c.permissionOverwrites.cache.values()].map(o => ({
  id: o.id, type: o.type, allow: o.allow.bitfield.toString(), deny: o.deny.bitfield.toString(),
})).sort((a, b) => a.id.localeCompare(b.id));

async function steps() {
  const channel = await owner.channels.fetch(channelId);
  const guild = channel.guild;
  const member = (await guild.members.fetch()).get(helperId);
  const theirs = helper.channels.cache.get(channelId);
  say('before', { view: channel.permissionsFor(member).has('ViewChannel') });

  await channel.permissionOverwrites.edit(guild.roles.everyone, { AddReactions: false });
  const everyone = await next('owner:update', c => c.permissionOverwrites.cache.size === 1);
  await next('helper:update', c => c.permissionOverwrites.cache.size === 1);
  say('everyone', { overwrites: overwritesOf(everyone),
    react: everyone.permissionsFor(member).has('AddReactions') });

  await channel.permissionOverwrites.create(member, { ViewChannel: false });
  const hidden = await next('owner:update', c => c.permissionOverwrites.cache.has(helperId));
  const told = await next('helper:update', c => c.permissionOverwrites.cache.has(helperId));
  say('hidden', { overwrites: overwritesOf(hidden),
    view: hidden.permissionsFor(member).has('ViewChannel'),
    ownerView: hidden.permissionsFor(guild.members.me).has('ViewChannel'),
    helperView: told.permissionsFor(told.guild.members.me).has('ViewChannel') });

  const open = await guild.channels.create({ name: 'open' });
  await channel.send('hidden');
  await open.send('open');
  say('owner_saw', await next('owner:message', m => m.content === 'hidden'));
  say('helper_saw', await next('helper:message'));

  say('refused', {
    send: await refusal(theirs.send('x')),
    history: await refusal(theirs.messages.fetch({ limit: 5, cache: false })),
    read: await refusal(helper.rest.get(`/channels/${channelId}`)),
  });

  await channel.permissionOverwrites.delete(member);
  await next('helper:update', c => !c.permissionOverwrites.cache.has(helperId));
  await channel.send('back');
  say('back', await next('helper:message', m => m.channel === channelId));
  const history = await theirs.messages.fetch({ limit: 1, cache: false });
  say('history', { contents: [...history.values()].map(m => m.content) });
  say('done');
}

runStepsWhenReady([owner, helper], steps);
login(owner, token);
login(helper, helperToken);
