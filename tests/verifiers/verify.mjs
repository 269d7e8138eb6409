#!/usr/bin/env node
// Checks recorded spec-notify deliveries with third-party Node verifiers.
//
// Usage: VERIFY_SECRET=... node verify.mjs SCHEME HEADERS.json BODY
//        node verify.mjs --batch CASES.json
//        node verify.mjs --self-check
//
// SCHEME is speckit, github or standard-webhooks. HEADERS.json is a JSON
// object of the request's headers (any case); BODY is the raw request body.
//   speckit            @octokit/webhooks-methods verify() on X-SpecKit-Signature
//   github             @octokit/webhooks-methods verify() on X-Hub-Signature-256
//   standard-webhooks  standardwebhooks Webhook.verify() on webhook-id,
//                      webhook-timestamp, webhook-signature (5 minute tolerance)
// A standard-webhooks delivery's X-SpecKit-Signature is checked with the
// speckit scheme (keyed with the whole `whsec_...` string).
//
// One delivery: exit 0 valid, 1 rejected (reason on stderr). --batch checks
// a JSON array of {scheme, secret, headers, body: path} and prints one line
// per case, `ok` or `rejected: reason`. Exit 2 on usage errors, 3 when the
// libraries are missing: they come from tests/verifiers/node_modules
// (install.sh puts them there).

import { readFileSync } from "node:fs";

let octokit, standard;
try {
  octokit = await import("@octokit/webhooks-methods");
  standard = await import("standardwebhooks");
} catch (error) {
  console.error(`verify.mjs: ${error.message}: run tests/verifiers/install.sh`);
  process.exit(3);
}
const { Webhook, WebhookVerificationError } = standard.default ?? standard;

class Rejected extends Error {
  name = "Rejected";
}

function usage(message) {
  console.error(`verify.mjs: ${message}`);
  process.exit(2);
}

function header(headers, name) {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  if (key === undefined) throw new Rejected(`missing header ${name}`);
  return headers[key];
}

async function hex(secret, body, headers, name) {
  if (!(await octokit.verify(secret, body, header(headers, name)))) {
    throw new Rejected(`${name} does not match (@octokit/webhooks-methods verify)`);
  }
}

// null when valid, else the library's reason.
async function check(scheme, secret, headers, body) {
  try {
    switch (scheme) {
      case "speckit":
        await hex(secret, body, headers, "X-SpecKit-Signature");
        break;
      case "github":
        await hex(secret, body, headers, "X-Hub-Signature-256");
        break;
      case "standard-webhooks":
        new Webhook(secret).verify(body, headers);
        break;
      default:
        usage(`unknown scheme ${scheme}`);
    }
  } catch (error) {
    if (error instanceof Rejected || error instanceof WebhookVerificationError) {
      return `${error.name}: ${error.message}`;
    }
    throw error;
  }
  return null;
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--self-check") process.exit(0);
if (args.length === 2 && args[0] === "--batch") {
  for (const c of JSON.parse(readFileSync(args[1], "utf8"))) {
    const reason = await check(c.scheme, c.secret, c.headers, readFileSync(c.body, "utf8"));
    console.log(reason === null ? "ok" : `rejected: ${reason}`);
  }
  process.exit(0);
}
if (args.length !== 3) usage("usage: VERIFY_SECRET=... node verify.mjs SCHEME HEADERS.json BODY");
const secret = process.env.VERIFY_SECRET;
if (!secret) usage("set VERIFY_SECRET");
const [scheme, headersPath, bodyPath] = args;
const headers = JSON.parse(readFileSync(headersPath, "utf8"));
const reason = await check(scheme, secret, headers, readFileSync(bodyPath, "utf8"));
console.error(reason === null ? "ok" : `rejected: ${reason}`);
process.exit(reason === null ? 0 : 1);
