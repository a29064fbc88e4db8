// What every tests/js script shares: its arguments, its JSON lines, its discord.js client
// and how it ends. The Python side is tests/gateway/libraries.py (discordjs_script runs a
// script and NodeBot reads its lines).

import { Client, DiscordAPIError, Events } from 'discord.js';

// One JSON line on stdout: {"event": event, ...fields}. The test reads them in order.
export const say = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);

// An error as an "error" line (the test fails at once on one), `where` naming the step.
export const report = (where, error) => say('error', { message: `${where}: ${error?.stack ?? error}` });

// The script's arguments, as tests/gateway/libraries.discordjs_script passes them:
// argv is <rest api base> then `names`; the bot token is GREENROOM_TOKEN (the
// environment, never argv, which every process on the machine can read) and `env` names
// more variables. Exits 2 with a usage line when one is missing.
export function scriptArgs(script, names = [], env = []) {
  const [api, ...rest] = process.argv.slice(2);
  const args = { api, token: process.env.GREENROOM_TOKEN };
  names.forEach((name, i) => { args[name] = rest[i]; });
  for (const name of env) args[name] = process.env[name];
  if (Object.values(args).some(value => !value)) {
    const variables = ['GREENROOM_TOKEN', ...env].map(name => `${name}=<...>`).join(' ');
    console.error(`usage: ${variables} node ${script} <rest api base> ${names.map(n => `<${n}>`).join(' ')}`);
    process.exit(2);
  }
  return args;
}

// A discord.js client, unmodified but for its REST base: discord.js takes it as
// `rest.api` (and appends /v10 itself) and the gateway URL from GET /gateway/bot, as on
// Discord. Its errors are "error" lines; GREENROOM_JS_DEBUG=1 sends its debug lines to
// stderr.
export function botClient(api, options) {
  const client = new Client({ ...options, rest: { ...options.rest, api } });
  client.on(Events.Error, error => report('client', error));
  client.on(Events.ShardError, error => report('shard', error));
  if (process.env.GREENROOM_JS_DEBUG) client.on(Events.Debug, line => console.error(line));
  return client;
}

// Log the client in; a refused login is an "error" line and exit 1.
export function login(client, token) {
  client.login(token).catch(error => {
    report('login', error);
    process.exit(1);
  });
}

// For a bot that stays connected: the test closes stdin to end it, and it destroys its
// clients and exits 0 (a clean exit is part of the contract).
export function exitWhenStdinCloses(...clients) {
  process.stdin.on('end', async () => {
    await Promise.all(clients.map(client => client.destroy()));
    process.exit(0);
  });
  process.stdin.resume();
}

// For a script of steps that ends by itself: run `steps` once every client is ready,
// then destroy them (the process exits); a failed step is an "error" line and exit code 1.
export function runStepsWhenReady(clients, steps) {
  let ready = 0;
  for (const client of clients) {
    client.once(Events.ClientReady, () => {
      ready += 1;
      if (ready < clients.length) return;
      steps().catch(error => {
        report('steps', error);
        process.exitCode = 1;
      }).finally(() => clients.forEach(c => c.destroy()));
    });
  }
}

// Events awaited by the step that caused them, whichever comes first: `arrived` keeps an
// event until `next(kind, match)` takes it, or hands it to the step already waiting.
export function eventWaiters() {
  const pending = [];
  const waiters = [];
  const arrived = (kind, value) => {
    const i = waiters.findIndex(w => w.kind === kind && w.match(value));
    if (i >= 0) waiters.splice(i, 1)[0].resolve(value);
    else pending.push({ kind, value });
  };
  const next = (kind, match = () => true) => {
    const i = pending.findIndex(p => p.kind === kind && match(p.value));
    if (i >= 0) return Promise.resolve(pending.splice(i, 1)[0].value);
    return new Promise(resolve => waiters.push({ kind, match, resolve }));
  };
  return { arrived, next };
}

// A request that Discord must refuse: its {status, code}; anything else throws.
export async function refusal(promise) {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DiscordAPIError) return { status: error.status, code: error.code };
    throw error;
  }
  throw new Error('not refused');
}
