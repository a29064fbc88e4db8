// A discord.js 14 bot, unmodified but for its base URL, driven by
// tests/gateway/test_discordjs.py against a greenroom gateway.
//
//   node bot.mjs <rest api base, e.g. http://127.0.0.1:PORT/api>
//   (the bot token comes in the GREENROOM_TOKEN environment variable: never argv,
//   which every process on the machine can read)
//
// discord.js takes the REST base as `rest.api` (it appends /v10 itself) and the gateway URL
// from GET /gateway/bot, as on Discord. Everything the bot sees and does is one JSON line
// on stdout; the test reads them and posts as another client. On "ping" the bot replies
// "pong", reads the history, edits and deletes its reply (each step once the event for the
// previous one arrived), then stays connected until stdin closes. GREENROOM_JS_DEBUG=1
// sends discord.js's debug lines to stderr.

import { Events, GatewayIntentBits } from 'discord.js';

import { botClient, eventWaiters, exitWhenStdinCloses, login, report, say, scriptArgs } from './common.mjs';

const { api, token } = scriptArgs('bot.mjs');
const client = botClient(api, {
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
});

// Each step of the round trip waits for the event of the one before (edit -> MESSAGE_UPDATE).
const { arrived, next: awaitEvent } = eventWaiters();

async function roundTrip(ping) {
  const pong = await ping.channel.send('pong');
  say('sent', { id: pong.id, content: pong.content });
  const history = await ping.channel.messages.fetch({ limit: 10, cache: false });
  say('history', { messages: [...history.values()].map(m => ({ id: m.id, content: m.content, author: m.author.id })) });
  const updated = awaitEvent(`update:${pong.id}`);
  const edited = await pong.edit('pong, edited');
  say('edited', { id: edited.id, content: edited.content, edited: edited.editedTimestamp !== null });
  say('update_event', await updated);
  const deleted = awaitEvent(`delete:${pong.id}`);
  await pong.delete();
  say('delete_event', await deleted);
  say('done');
}

client.once(Events.ClientReady, async ready => {
  const guilds = [...ready.guilds.cache.values()].map(g => ({
    id: g.id, name: g.name, channels: [...g.channels.cache.keys()],
  }));
  say('ready', { user: ready.user.id, bot: ready.user.bot, guilds });
  try {
    const application = await ready.application.fetch();
    say('application', { id: application.id, guilds: application.approximateGuildCount });
  } catch (error) {
    report('application.fetch', error);
  }
});

client.on(Events.ShardResume, (shard, replayed) => say('resumed', { shard, replayed }));
// each READY of the shard, its guilds in (the first, then one after each new session)
let shardReadies = 0;
client.on(Events.ShardReady, shard => say('shard_ready', { shard, count: ++shardReadies }));

client.on(Events.MessageCreate, message => {
  if (message.author.id === client.user.id) return;
  say('message', { id: message.id, content: message.content, author: message.author.id, channel: message.channelId });
  if (message.content === 'ping') {
    roundTrip(message).catch(error => report('round trip', error));
  }
});

client.on(Events.MessageUpdate, (_, message) => arrived(`update:${message.id}`, { id: message.id, content: message.content }));
client.on(Events.MessageDelete, message => arrived(`delete:${message.id}`, { id: message.id }));

exitWhenStdinCloses(client);
login(client, token);
