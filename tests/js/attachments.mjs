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

import { Client, Events, GatewayIntentBits } from 'discord.js';

const [api, channelId] = process.argv.slice(2);
const token = process.env.GREENROOM_TOKEN;
const files = JSON.parse(process.env.GREENROOM_FILES ?? '[]');
if (!api || !channelId || !token || !files.length) {
  console.error('usage: GREENROOM_TOKEN=<token> GREENROOM_FILES=<json> node attachments.mjs <rest api base> <channel id>');
  process.exit(2);
}

const say = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const fail = (error) => {
  say('error', { message: String(error?.stack ?? error) });
  process.exit(1);
};
const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
  rest: { api },
});
client.on(Events.Error, fail);

const created = new Map();
client.on(Events.MessageCreate, message => {
  const resolve = created.get(message.id);
  if (resolve) resolve(message);
  else created.set(message.id, message);
});
const messageCreated = (id) => {
  const seen = created.get(id);
  if (seen && typeof seen !== 'function') return Promise.resolve(seen);
  return new Promise(resolve => created.set(id, resolve));
};

const described = (message) => [...message.attachments.values()].map(a => ({
  id: a.id, name: a.name, size: a.size, url: a.url, proxyURL: a.proxyURL,
  contentType: a.contentType, width: a.width, height: a.height, description: a.description,
}));

client.once(Events.ClientReady, async () => {
  try {
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
    await client.destroy();
    process.exit(0);
  } catch (error) {
    fail(error);
  }
});

client.login(token).catch(fail);
