// A discord.js 14 bot WITHOUT the MessageContent intent, unmodified but for its base URL,
// driven by tests/gateway/test_messages_discordjs.py: embeds, mentions and replies.
//
//   GREENROOM_TOKEN=<token> node messages.mjs <rest api base>
//
// It reports every message it receives (content, embeds, mentions, reference). When a
// message mentions it, it replies with an embed and a mention of the author
// (message.reply), fetches the reply (messages.fetch, force) and what it replies to
// (fetchReference), then edits the embed. Everything it sees and does is one JSON line on
// stdout; it exits when stdin closes.

import { EmbedBuilder, Events, GatewayIntentBits } from 'discord.js';

import { botClient, exitWhenStdinCloses, login, report, say, scriptArgs } from './common.mjs';

const { api, token } = scriptArgs('messages.mjs');
const client = botClient(api, { intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages] });

const describe = message => ({
  id: message.id,
  type: message.type,
  content: message.content,
  author: message.author.id,
  embeds: message.embeds.map(embed => ({
    title: embed.title, description: embed.description, url: embed.url, color: embed.color,
    fields: embed.fields, footer: embed.footer?.text ?? null, author: embed.author?.name ?? null,
  })),
  mentions: [...message.mentions.users.keys()],
  member_mentions: [...(message.mentions.members?.keys() ?? [])],
  reference: message.reference ? {
    message: message.reference.messageId, channel: message.reference.channelId,
    guild: message.reference.guildId,
  } : null,
  // discord.js caches referenced_message when the payload carries it
  referenced_cached: message.reference ? message.channel.messages.cache.has(message.reference.messageId)
    : false,
});

client.once(Events.ClientReady, () => say('ready', { user: client.user.id }));

client.on(Events.MessageCreate, async message => {
  say('message', describe(message));
  if (message.author.id === client.user.id || !message.mentions.users.has(client.user.id)) return;
  try {
    const embed = new EmbedBuilder().setTitle('Build 42').setDescription('all green')
      .setURL('https://ci.example/42').setColor(0x00ff00)
      .addFields({ name: 'tests', value: '1200', inline: true })
      .setFooter({ text: 'ci' }).setAuthor({ name: 'builder' });
    const sent = await message.reply({ content: `done, <@${message.author.id}>`, embeds: [embed] });
    say('sent', describe(sent));
    const fetched = await message.channel.messages.fetch({ message: sent.id, force: true, cache: false });
    say('fetched', describe(fetched));
    const answered = await sent.fetchReference();
    say('reference', { id: answered.id, content: answered.content });
    const edited = await sent.edit({ embeds: [new EmbedBuilder().setTitle('Build 43')] });
    say('edited', describe(edited));
  } catch (error) {
    report('reply', error);
  }
});

exitWhenStdinCloses(client);
login(client, token);
