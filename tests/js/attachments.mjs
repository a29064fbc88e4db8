// Attachments with discord.js 14, unmodified but for its base URL, driven by
// tests/gateway/test_attachments_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<bot token> GREENROOM_FILES=<json [{name, description?, base64}]>
//     node attachments.mjs <rest api base> <channel id>
//
// The bot sends the files with `channel.send({ files })`, reports the attachments of the
// MESSAGE_CREATE it receives and of the send's answer, downloads each url with fetch and
// reports its bytes (base64), deletes the message and reports what the url answers then.
// Every step is one JSON line on stdout; an error is an "error" line, then exit 1.

import { Events, GatewayIntentBits } from 'discord.js';

import { botClient, eventWaiters, login, runStepsWhenReady, say, scriptArgs } from './common.mjs';

const { api, token, channelId, GREENROOM_FILES } = scriptArgs('attachments.mjs', ['channelId'],
  ['GREENROOM_FILES']);
const files = JSON.parse(GREENROOM_FILES);
const client = botClient(api, {
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
});

const { arrived, next } = eventWaiters();
client.on(Events.MessageCreate, message => arrived('message', message));
const messageCreated = id => next('message', message => message.id === id);

const described = (message) => [...message.attachments.values()].map(a => ({
  id: a.id, name: a.name, size: a.size, url: a.url, proxyURL: a.proxyURL,
  contentType: a.contentType, width: a.width, height: a.height, description: a.description,
}));

runStepsWhenReady([client], async () => {
  const channel = await client.channels.fetch(channelId);
  const sent = await channel.send({
    content: 'files from discord.js',
    files: files.map(f => ({ attachment: Buffer.from(f.base64, 'base64'), name: f.name, description: f.description })),
  });
  say('sent', { id: sent.id, attachments: described(sent) });
  const received = await messageCreated(sent.id);
  say('received', { id: received.id, attachments: described(received) });
  for (const attachment of received.attachments.values()) {
    const response = await fetch(attachment.url);
    const body = Buffer.from(await response.arrayBuffer());
    say('downloaded', { id: attachment.id, status: response.status, base64: body.toString('base64') });
  }
  await sent.delete();
  const gone = await fetch(received.attachments.first().url);
  say('deleted', { status: gone.status });
});

login(client, token);
