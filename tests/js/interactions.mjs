// Interactions with discord.js 14, unmodified but for its base URL, driven by
// tests/gateway/test_interactions_discordjs.py against a greenroom gateway.
//
//   GREENROOM_TOKEN=<bot token> node interactions.mjs <rest api base> <guild id>
//
// Once ready, the bot registers a slash command in its guild (guild.commands.set) and
// says "registered" with its id; the test then invokes it as a user. The bot answers the
// command with interaction.reply (content and a button, withResponse), and the button's
// click with interaction.update. Every step is one JSON line on stdout; an error is an
// "error" line. It stays connected until stdin closes.

import {
  ActionRowBuilder, ButtonBuilder, ButtonStyle, Client, Events, GatewayIntentBits,
  SlashCommandBuilder,
} from 'discord.js';

const [api, guildId] = process.argv.slice(2);
const token = process.env.GREENROOM_TOKEN;
if (!api || !guildId || !token) {
  console.error('usage: GREENROOM_TOKEN=<token> node interactions.mjs <rest api base> <guild id>');
  process.exit(2);
}

const say = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api } });
const fail = (error) => say('error', { message: String(error?.stack ?? error) });
client.on(Events.Error, fail);

client.once(Events.ClientReady, async () => {
  try {
    const guild = client.guilds.cache.get(guildId);
    const roll = new SlashCommandBuilder().setName('roll').setDescription('Roll a die')
      .addIntegerOption(o => o.setName('sides').setDescription('sides').setRequired(true));
    const set = await guild.commands.set([roll.toJSON()]);
    say('registered', { id: [...set.values()][0].id });
  } catch (error) {
    fail(error);
  }
});

client.on(Events.InteractionCreate, async (interaction) => {
  try {
    if (interaction.isChatInputCommand()) {
      const sides = interaction.options.getInteger('sides', true);
      say('command', { name: interaction.commandName, sides, user: interaction.user.id,
        member: interaction.member?.user?.id ?? null, channel: interaction.channelId,
        guild: interaction.guildId });
      const row = new ActionRowBuilder().addComponents(
        new ButtonBuilder().setCustomId('again').setLabel('Again').setStyle(ButtonStyle.Primary));
      const response = await interaction.reply({ content: `a d${sides}`, components: [row],
        withResponse: true });
      say('replied', { message: response.resource?.message?.id ?? null,
        replied: interaction.replied });
    } else if (interaction.isButton()) {
      say('click', { customId: interaction.customId, message: interaction.message.id,
        user: interaction.user.id });
      await interaction.update({ content: 'clicked', components: [] });
      say('updated');
    }
  } catch (error) {
    fail(error);
  }
});

process.stdin.on('end', async () => {
  await client.destroy();
  process.exit(0);
});
process.stdin.resume();

client.login(token).catch(fail);
