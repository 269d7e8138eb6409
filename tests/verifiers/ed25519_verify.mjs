#!/usr/bin/env node
// Checks recorded spec-notify deliveries' Standard Webhooks `v1a` (ed25519)
// signatures with Node's own crypto.verify, given only the receiver's
// `whpk_...` public key: an implementation of the spec independent of
// spec-notify.
//
// Usage: node ed25519_verify.mjs --batch CASES.json
//        node ed25519_verify.mjs --self-check
//
// CASES.json is a JSON array of {public_key, headers, body: path}; prints
// one line per case, `ok` or `rejected: reason`: valid when one
// `v1a,<base64>` entry of webhook-signature is an ed25519 signature, by that
// key, of `{webhook-id}.{webhook-timestamp}.{raw body}`, and
// webhook-timestamp is within 5 minutes of now. Exit 2 on usage errors.

import { createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

const TOLERANCE_SECONDS = 5 * 60;

class Rejected extends Error {
  name = "Rejected";
}

function header(headers, name) {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  if (key === undefined) throw new Rejected(`missing header ${name}`);
  return headers[key];
}

function publicKey(text) {
  if (!text.startsWith("whpk_")) throw new Rejected("the public key does not start with whpk_");
  const raw = Buffer.from(text.slice("whpk_".length), "base64");
  if (raw.length !== 32) throw new Rejected(`the public key is ${raw.length} bytes, not 32`);
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

// null when valid, else why not.
function check(keyText, headers, body) {
  try {
    const key = publicKey(keyText);
    const id = header(headers, "webhook-id");
    const timestamp = header(headers, "webhook-timestamp");
    const offered = header(headers, "webhook-signature");
    if (Math.abs(Date.now() / 1000 - Number.parseInt(timestamp, 10)) > TOLERANCE_SECONDS) {
      throw new Rejected(`webhook-timestamp ${timestamp} is outside the tolerance`);
    }
    const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
    for (const entry of offered.split(" ")) {
      const comma = entry.indexOf(",");
      if (comma < 0 || entry.slice(0, comma) !== "v1a") continue;
      const signature = Buffer.from(entry.slice(comma + 1), "base64");
      if (signature.length === 64 && verify(null, signed, key, signature)) return null;
    }
    throw new Rejected("no v1a signature matches");
  } catch (error) {
    if (error instanceof Rejected) return `${error.name}: ${error.message}`;
    throw error;
  }
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--self-check") process.exit(0);
if (args.length !== 2 || args[0] !== "--batch") {
  console.error("ed25519_verify.mjs: usage: node ed25519_verify.mjs --batch CASES.json");
  process.exit(2);
}
for (const c of JSON.parse(readFileSync(args[1], "utf8"))) {
  const reason = check(c.public_key, c.headers, readFileSync(c.body));
  console.log(reason === null ? "ok" : `rejected: ${reason}`);
}
