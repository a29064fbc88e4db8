// A discord.js 14 bot that talks in DMs, unmodified but for its base URL, driven by
// tests/gateway/test_dms_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<token> node dms.mjs <rest api base> <user id to DM>
//
// On ready it fetches the user (users.fetch), opens the DM (createDM) and sends into it
// (user.send). It receives DMs as discord.js bots do, with Partials.Channel (the DM
// channel is not cached until a message makes it), answers "ping" with "pong" in the
// same channel and reads the DM's history. Everything it sees and does is one JSON line
// on stdout; it exits when stdin closes.

import { ChannelType, Events, GatewayIntentBits, Partials } from 'discord.js';

import { botClient, exitWhenStdinCloses, login, report, say, scriptArgs } from './common.mjs';

const { api, token, userId } = scriptArgs('dms.mjs', ['userId']);
const client = botClient(api, {
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent,
    GatewayIntentBits.DirectMessages, GatewayIntentBits.DirectMessageTyping],
  partials: [Partials.Channel],
});

client.once(Events.ClientReady, async () => {
  try {
    const user = await client.users.fetch(userId);
    const dm = await user.createDM();
    say('dm', { id: dm.id, type: dm.type, recipient: dm.recipientId, username: user.username });
    const again = await client.users.createDM(userId, { force: true });
    const sent = await user.send('hello from discord.js');
    say('sent', { id: sent.id, channel: sent.channelId, dm: sent.channel.type === ChannelType.DM,
      again: again.id, content: sent.content });
  } catch (error) {
    report('ready', error);
  }
});

client.on(Events.MessageCreate, async message => {
  say('message', {
    id: message.id, content: message.content, author: message.author.id, channel: message.channelId,
    guild: message.guildId, dm: message.channel.type === ChannelType.DM,
    recipient: message.channel.recipientId ?? null,
  });
  if (message.author.id === client.user.id || message.content !== 'ping') return;
  try {
    const pong = await message.channel.send('pong');
    say('pong', { id: pong.id, channel: pong.channelId });
    const history = await message.channel.messages.fetch({ limit: 10, cache: false });
    say('history', { messages: [...history.values()].map(m => m.content) });
  } catch (error) {
    report('reply', error);
  }
});

client.on(Events.TypingStart, typing => say('typing', {
  user: typing.user.id, channel: typing.channel.id, dm: typing.channel.type === ChannelType.DM,
}));

exitWhenStdinCloses(client);
login(client, token);
