#!/usr/bin/env node
// A spec-notify webhook receiver in Node, with the libraries receivers use:
// @octokit/webhooks-methods (speckit, github) and standardwebhooks.
//
//   npm install        # in examples/: installs both
//   WEBHOOK_SECRET=... node receiver.mjs [speckit|github|standard-webhooks]
//   WEBHOOK_PUBLIC_KEY=whpk_... node receiver.mjs v1a
//
// Listens on 127.0.0.1:$PORT (default 8788; 0 picks a free port), verifies
// each POST, answers 204 when genuine and 401 when not, and prints one line
// per event. Headers it reads:
//   speckit            X-SpecKit-Signature: sha256=<hex HMAC-SHA256(secret, body)>
//   github             X-Hub-Signature-256 (same value as X-SpecKit-Signature)
//   standard-webhooks  webhook-id, webhook-timestamp, webhook-signature
//                      (the library enforces a 5 minute timestamp tolerance)
//   v1a                the same headers, ed25519 signatures (`v1a,<base64>`)
//                      checked with Node's crypto.verify against the
//                      subscription's public key: the receiver holds no secret
//   always             X-SpecKit-Id (dedupe: the same on every retry/replay),
//                      X-SpecKit-Event
// During a rotation set WEBHOOK_SECRET_PREVIOUS (or WEBHOOK_PUBLIC_KEY_PREVIOUS)
// too: both are accepted.

import { createPublicKey, verify } from "node:crypto";
import { createServer } from "node:http";
import { verifyWithFallback } from "@octokit/webhooks-methods";
import standardwebhooks from "standardwebhooks";

const { Webhook } = standardwebhooks;
const SCHEMES = ["speckit", "github", "standard-webhooks", "v1a"];
const MAX_BODY = 1 << 20;
const TOLERANCE_SECONDS = 5 * 60;

const scheme = process.argv[2] ?? "speckit";
const secrets = [process.env.WEBHOOK_SECRET, process.env.WEBHOOK_SECRET_PREVIOUS].filter(Boolean);
// whpk_<base64 of the 32-byte ed25519 public key>, as a Node KeyObject.
const publicKeys = [process.env.WEBHOOK_PUBLIC_KEY, process.env.WEBHOOK_PUBLIC_KEY_PREVIOUS]
  .filter(Boolean)
  .map((text) => {
    const x = Buffer.from(text.replace(/^whpk_/, ""), "base64").toString("base64url");
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
  });
const keys = scheme === "v1a" ? publicKeys : secrets;
if (!SCHEMES.includes(scheme) || keys.length === 0) {
  console.error(`usage: WEBHOOK_SECRET=... node receiver.mjs [${SCHEMES.join("|")}]`);
  console.error("       (v1a: WEBHOOK_PUBLIC_KEY=whpk_... instead of WEBHOOK_SECRET)");
  process.exit(2);
}
const seen = new Set();

// Standard Webhooks v1a: an ed25519 signature of "id.timestamp.body" by one
// of our public keys, within the timestamp tolerance.
function v1aGenuine(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const offered = headers["webhook-signature"];
  if (!id || !timestamp || !offered) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const signed = Buffer.from(`${id}.${timestamp}.${body}`);
  return offered.split(" ").some((entry) => {
    const [version, signature] = entry.split(",");
    if (version !== "v1a" || !signature) return false;
    const bytes = Buffer.from(signature, "base64");
    return bytes.length === 64 && publicKeys.some((key) => verify(null, signed, key, bytes));
  });
}

async function genuine(headers, body) {
  if (scheme === "v1a") return v1aGenuine(headers, body);
  if (scheme === "standard-webhooks") {
    // Webhook.verify checks the timestamp tolerance and every v1 signature
    // in the space-separated list, comparing in constant time.
    return secrets.some((secret) => {
      try {
        new Webhook(secret).verify(body, headers);
        return true;
      } catch {
        return false;
      }
    });
  }
  const signature = headers[scheme === "github" ? "x-hub-signature-256" : "x-speckit-signature"];
  if (!signature) return false;
  // Constant-time comparison (crypto.timingSafeEqual) against each secret.
  return verifyWithFallback(secrets[0], body, signature, secrets.slice(1));
}

const server = createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on("end", async () => {
    if (size > MAX_BODY) return res.writeHead(413).end();
    // Verify the exact bytes received, before parsing them.
    const body = Buffer.concat(chunks).toString("utf8");
    if (req.method !== "POST" || !(await genuine(req.headers, body))) {
      console.error(`rejected: bad or missing ${scheme} signature`);
      return res.writeHead(401).end();
    }
    const id = req.headers["x-speckit-id"] ?? "-";
    if (seen.has(id)) {
      console.log(`duplicate ${id}`); // a retry or replay we already handled
      return res.writeHead(204).end();
    }
    seen.add(id);
    const envelope = JSON.parse(body);
    const { stage = "-", status = "-" } = envelope.event ?? {};
    console.log(
      `accepted ${id} ${req.headers["x-speckit-event"] ?? "-"} ${envelope.spec?.id ?? "-"} ${stage}/${status}`,
    );
    res.writeHead(204).end();
  });
});

server.listen(Number(process.env.PORT ?? 8788), "127.0.0.1", () => {
  const { address, port } = server.address();
  console.error(`listening on http://${address}:${port}/ (${scheme})`);
});
