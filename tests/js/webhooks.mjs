// Webhooks with discord.js 14, unmodified but for its base URL, driven by
// tests/gateway/test_webhooks_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<bot token> node webhooks.mjs <rest api base> <channel id>
//
// The bot creates a channel webhook (channel.createWebhook) and lists it; a
// WebhookClient built from the webhook's URL alone (Discord's form,
// https://discord.com/api/webhooks/<id>/<token>: discord.js parses only that form; its
// requests go to `rest.api`) sends with a username, edits, fetches and deletes its
// message, and is refused for a wrong token and a thread_id; the bot sees each message
// event and WEBHOOKS_UPDATE, renames and deletes the webhook, and the URL is refused
// after. Every step is one JSON line on stdout; an error is an "error" line, then exit 1.

import { Events, GatewayIntentBits, WebhookClient } from 'discord.js';

import { botClient, eventWaiters, login, refusal, runStepsWhenReady, say, scriptArgs } from './common.mjs';

const { api, token, channelId } = scriptArgs('webhooks.mjs', ['channelId']);
const client = botClient(api, {
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildWebhooks,
    GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent],
});

// Each step waits for the event the one before caused.
const { arrived, next } = eventWaiters();

const seen = (m) => ({ id: m.id, webhookId: m.webhookId, content: m.content,
  embeds: m.embeds.map(e => e.title), author: { id: m.author?.id, username: m.author?.username, bot: m.author?.bot } });
client.on(Events.MessageCreate, m => arrived('message', seen(m)));
client.on(Events.MessageUpdate, (_, m) => arrived('update', seen(m)));
client.on(Events.MessageDelete, m => arrived('delete', { id: m.id }));
client.on(Events.WebhooksUpdate, channel => arrived('webhooks_update', { channel: channel.id }));

async function steps() {
  const channel = await client.channels.fetch(channelId);
  const webhook = await channel.createWebhook({ name: 'ci' });
  say('created', { id: webhook.id, name: webhook.name, tokenLength: webhook.token?.length,
    channelId: webhook.channelId, owner: webhook.owner?.id, incoming: webhook.isIncoming() });
  say('webhooks_update', await next('webhooks_update'));
  say('listed', { channel: [...(await channel.fetchWebhooks()).keys()],
    guild: [...(await channel.guild.fetchWebhooks()).keys()] });

  const url = `https://discord.com/api/webhooks/${webhook.id}/${webhook.token}`;
  const hook = new WebhookClient({ url }, { rest: { api } });
  const sent = await hook.send({ content: 'build 3 passed', username: 'deploy',
    embeds: [{ title: 'Build 3', color: 0x2ecc71 }] });
  say('sent', { id: sent.id, webhookId: sent.webhook_id, content: sent.content,
    author: sent.author.username, embed: sent.embeds[0]?.title });
  say('message', await next('message'));

  const edited = await hook.editMessage(sent.id, { content: 'build 3 fixed' });
  say('edited', { content: edited.content, edited: edited.edited_timestamp !== null });
  say('update', await next('update'));
  say('fetched', { content: (await hook.fetchMessage(sent.id)).content });
  await hook.deleteMessage(sent.id);
  say('delete', await next('delete'));

  const wrong = new WebhookClient({ id: webhook.id, token: 'x'.repeat(68) }, { rest: { api } });
  say('wrong_token', await refusal(wrong.send('x')));
  say('thread', await refusal(hook.send({ content: 'x', threadId: '1' })));
  wrong.destroy();

  const renamed = await webhook.edit({ name: 'ci-2' });
  say('renamed', { name: renamed.name });
  await next('webhooks_update');
  await webhook.delete();
  await next('webhooks_update');
  say('after_delete', await refusal(hook.send('after')));
  hook.destroy();
  say('done');
}

runStepsWhenReady([client], steps);
login(client, token);
