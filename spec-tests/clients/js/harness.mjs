// Starts a fresh Sori for a test and hands out matrix-js-sdk clients.
// The server binary comes from $TESTED_SORI_BINARY (scripts/test sets it); SORI_* variables
// are not passed on, since they would configure the server.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

// The SDK's own log (sends, remote echoes, scheduler retries) with JSLOG=1.
logger.setLevel(process.env.JSLOG ? "debug" : "silent");

function freePort() {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

function binary() {
  if (process.env.TESTED_SORI_BINARY) return process.env.TESTED_SORI_BINARY;
  // The same default as scripts/test and scripts/run.
  const target = process.env.CARGO_TARGET_DIR ?? join(homedir(), ".cache", "sori-target");
  return join(target, "debug", "sori");
}

export const password = (name) => `${name}-correct-horse`;

export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "sori-js-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  writeFileSync(
    join(dir, "sori.toml"),
    [
      'server_name = "localhost"',
      "[listen]",
      `client = "127.0.0.1:${port}"`,
      "[storage]",
      `path = "${dir}/data"`,
      "cache_mb = 8",
      "[registration]",
      "enabled = true",
      "[rate_limits]",
      "login = { per_second = 1000.0, burst = 1000 }",
      "registration = { per_second = 1000.0, burst = 1000 }",
      "[log]",
      'format = "json"',
      'level = "info"',
      "",
    ].join("\n"),
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SORI_")));
  const log = openSync(join(dir, "sori.log"), "w");
  const child = spawn(binary(), ["--config", join(dir, "sori.toml"), "serve"], {
    env,
    stdio: ["ignore", log, log],
  });
  const clients = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const response = await fetch(`${url}/_matrix/client/versions`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`sori did not start: ${readFileSync(join(dir, "sori.log"), "utf8")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    /** Registers a user and returns a client for it (not yet syncing). */
    async register(name) {
      const anonymous = sdk.createClient({ baseUrl: url });
      const registered = await anonymous.registerRequest({
        username: name,
        password: password(name),
        auth: { type: "m.login.dummy" },
        initial_device_display_name: "node",
      });
      return this.client(registered);
    },
    client({ user_id, access_token, device_id }) {
      const client = sdk.createClient({
        baseUrl: url,
        userId: user_id,
        accessToken: access_token,
        deviceId: device_id,
      });
      clients.push(client);
      return client;
    },
    async stop() {
      for (const client of clients) client.stopClient();
      child.kill("SIGKILL");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts the client's sync loop and resolves once the first sync is in. */
export async function startSyncing(client, options = {}) {
  const ready = new Promise((done, fail) => {
    const onSync = (state, _prev, data) => {
      if (state === "PREPARED" || state === "SYNCING") {
        client.off(sdk.ClientEvent.Sync, onSync);
        done();
      } else if (state === "ERROR") {
        client.off(sdk.ClientEvent.Sync, onSync);
        fail(data?.error ?? new Error("sync failed"));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
  });
  await client.startClient({ initialSyncLimit: 20, ...options });
  await ready;
}

/** Waits until `check()` is true, re-checking on every sync and at short intervals. */
export async function until(check, what, seconds = 10) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export { sdk };
