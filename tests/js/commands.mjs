// Application commands with discord.js 14, unmodified but for its base URL, driven by
// tests/gateway/test_commands_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<bot token> node commands.mjs <rest api base> <guild id>
//
// Once ready, the bot sets its global commands (client.application.commands.set, with a
// SlashCommandBuilder and raw USER/MESSAGE commands), creates one in its guild
// (guild.commands.create), fetches both scopes, creates again by the same name (an
// upsert), edits, deletes, and is refused a bad name (50035 naming the field). Every
// step is one JSON line on stdout; an error is an "error" line, then exit 1.

import {
  ApplicationCommandOptionType, ApplicationCommandType, ChannelType, Client, DiscordAPIError,
  Events, GatewayIntentBits, PermissionFlagsBits, SlashCommandBuilder,
} from 'discord.js';

const [api, guildId] = process.argv.slice(2);
const token = process.env.GREENROOM_TOKEN;
if (!api || !guildId || !token) {
  console.error('usage: GREENROOM_TOKEN=<token> node commands.mjs <rest api base> <guild id>');
  process.exit(2);
}

const say = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api } });

const seen = (c) => ({
  id: c.id, name: c.name, type: c.type, description: c.description, guildId: c.guildId,
  applicationId: c.applicationId, version: c.version,
  defaultMemberPermissions: c.defaultMemberPermissions?.bitfield?.toString() ?? null,
  options: c.options.map(o => ({
    type: o.type, name: o.name, required: o.required ?? false, autocomplete: o.autocomplete ?? false,
    choices: o.choices?.map(ch => [ch.name, ch.value]) ?? null, minValue: o.minValue ?? null,
    maxValue: o.maxValue ?? null, channelTypes: o.channelTypes ?? null,
    options: o.options?.map(s => s.name) ?? null,
  })),
});

async function steps() {
  const roll = new SlashCommandBuilder()
    .setName('roll').setDescription('Roll dice')
    .setNameLocalizations({ fr: 'lancer' })
    .setDefaultMemberPermissions(PermissionFlagsBits.SendMessages)
    .addIntegerOption(o => o.setName('sides').setDescription('how many sides')
      .setRequired(true).setMinValue(2).setMaxValue(100))
    .addStringOption(o => o.setName('style').setDescription('how')
      .addChoices({ name: 'Plain', value: 'plain' }, { name: 'Fancy', value: 'fancy' }))
    .addChannelOption(o => o.setName('where').setDescription('post it there')
      .addChannelTypes(ChannelType.GuildText));
  const set = await client.application.commands.set([
    roll.toJSON(),
    { name: 'search', description: 'Search', options: [
      { type: ApplicationCommandOptionType.Subcommand, name: 'users', description: 'People',
        options: [{ type: ApplicationCommandOptionType.String, name: 'query',
          description: 'text', autocomplete: true }] }] },
    { type: ApplicationCommandType.User, name: 'Wave' },
    { type: ApplicationCommandType.Message, name: 'Pin it' },
  ]);
  say('set', { commands: [...set.values()].map(seen) });

  const guild = client.guilds.cache.get(guildId);
  const local = await guild.commands.create({ name: 'local', description: 'Guild only' });
  say('guild_created', seen(local));

  const global = await client.application.commands.fetch();
  say('fetched_global', { names: [...global.values()].map(c => c.name).sort() });
  const inGuild = await guild.commands.fetch();
  say('fetched_guild', { names: [...inGuild.values()].map(c => c.name) });

  const again = await guild.commands.create({ name: 'local', description: 'Guild only, again' });
  say('upserted', seen(again));
  const edited = await again.edit({ description: 'Edited' });
  say('edited', seen(edited));
  await edited.delete();
  say('deleted', { names: [...(await guild.commands.fetch()).values()].map(c => c.name) });

  try {
    await client.application.commands.create({ name: 'Not Valid', description: 'x' });
    throw new Error('an invalid name was accepted');
  } catch (error) {
    if (!(error instanceof DiscordAPIError)) throw error;
    say('refused', { status: error.status, code: error.code, errors: error.rawError.errors });
  }
  say('done');
}

client.once(Events.ClientReady, () => {
  steps().catch(error => {
    say('error', { message: String(error?.stack ?? error) });
    process.exitCode = 1;
  }).finally(() => client.destroy());
});
client.login(token).catch(error => {
  say('error', { message: String(error?.stack ?? error) });
  process.exit(1);
});
