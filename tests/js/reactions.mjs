// A discord.js 14 bot exercising reactions, unmodified but for its base URL, driven by
// tests/gateway/test_reactions_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<token> GREENROOM_OTHER=<the other user's id> node reactions.mjs <rest api base>
//   (tests/js/common.mjs: the arguments, the client, the JSON lines)
//
// When another user posts "react", the bot reacts (Unicode, then a custom emoji as
// <:name:id>), says "reacted" and waits for the other user's reaction (posted by the
// test); then it reads the counts and the reactors, removes the other user's reaction,
// its own, one emoji's and all, each step once the event of the one before arrived.
// Every event is one JSON line on stdout.

import { Events, GatewayIntentBits } from 'discord.js';
import { botClient, exitWhenStdinCloses, login, report, say, scriptArgs } from './common.mjs';

const { api, token, GREENROOM_OTHER: other } = scriptArgs('reactions.mjs', [], ['GREENROOM_OTHER']);
const PARTY = '112233445566778899';

const client = botClient(api, {
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages,
    GatewayIntentBits.GuildMessageReactions, GatewayIntentBits.MessageContent],
});

// Each step waits for the event the one before caused.
const waiting = new Map();
const awaitEvent = (key) => new Promise(resolve => waiting.set(key, resolve));
const arrived = (key, value) => {
  say(key.split(':')[0], value);
  const resolve = waiting.get(key);
  if (resolve) {
    waiting.delete(key);
    resolve(value);
  }
};
const emojiKey = emoji => emoji.id ?? emoji.name;

client.on(Events.MessageReactionAdd, (reaction, user) => arrived(`add:${user.id}:${emojiKey(reaction.emoji)}`, {
  user: user.id, emoji: reaction.emoji.name, emojiId: reaction.emoji.id, count: reaction.count, me: reaction.me,
}));
client.on(Events.MessageReactionRemove, (reaction, user) => arrived(`remove:${user.id}:${emojiKey(reaction.emoji)}`, {
  user: user.id, emoji: reaction.emoji.name, count: reaction.count,
}));
client.on(Events.MessageReactionRemoveEmoji, reaction => arrived(`remove_emoji:${emojiKey(reaction.emoji)}`, {
  emoji: reaction.emoji.name, emojiId: reaction.emoji.id,
}));
client.on(Events.MessageReactionRemoveAll, message => arrived(`remove_all:${message.id}`, { message: message.id }));

async function reactions(message) {
  const me = client.user.id;
  let heard = awaitEvent(`add:${me}:👍`);
  await message.react('👍');
  await heard;
  heard = awaitEvent(`add:${me}:${PARTY}`);
  await message.react(`<:party:${PARTY}>`);
  await heard;
  heard = awaitEvent(`add:${other}:👍`);
  say('reacted');
  await heard;  // the test adds the other user's 👍

  const fetched = await message.channel.messages.fetch({ message: message.id, force: true });
  say('counts', { reactions: [...fetched.reactions.cache.values()].map(r => ({ emoji: r.emoji.name, count: r.count, me: r.me })) });
  const thumbs = fetched.reactions.cache.get('👍');
  const users = await thumbs.users.fetch();
  say('users', { ids: [...users.keys()] });

  heard = awaitEvent(`remove:${other}:👍`);
  await thumbs.users.remove(other);
  await heard;
  heard = awaitEvent(`remove:${me}:👍`);
  await thumbs.users.remove();  // its own
  await heard;
  heard = awaitEvent(`remove_emoji:${PARTY}`);
  await fetched.reactions.cache.get(PARTY).remove();
  await heard;
  heard = awaitEvent(`add:${me}:🔥`);
  await fetched.react('🔥');
  await heard;
  heard = awaitEvent(`remove_all:${message.id}`);
  await fetched.reactions.removeAll();
  await heard;
  const after = await message.channel.messages.fetch({ message: message.id, force: true });
  say('done', { left: after.reactions.cache.size });
}

client.on(Events.MessageCreate, message => {
  if (message.author.id === client.user.id || message.content !== 'react') return;
  reactions(message).catch(error => report('reactions', error));
});

client.once(Events.ClientReady, () => say('ready'));
exitWhenStdinCloses(client);
login(client, token);
