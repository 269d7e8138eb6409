#!/usr/bin/env node
// Renders chat messages the way each platform's own parser does, and lists
// what a reader would get from them: links, images and mentions.
//
// Usage: node chat_render.mjs PLATFORM BODY...   (PLATFORM: mattermost, discord, teams;
//                                                  each BODY a file with one message)
//        node chat_render.mjs --self-check
//
// Prints one JSON line per BODY: {"links": [...], "images": [...],
// "mentions": [...], "text": "..."}. Exit 2 on usage errors, 3 when a
// library is missing (install.sh).
//
// - Mattermost: the server's incoming-webhook text processing, ported from
//   mattermost-server (server/channels/app/slack.go `expandAnnouncement`,
//   `replaceUserIds`; app/webhook.go `CreateWebhookPost`'s
//   `linkWithTextRegex`), then Mattermost's own Markdown parser
//   (@mattermost/commonmark, the fork its mobile app renders with: links,
//   images, autolinked URLs and e-mails, `@name` mentions, `~channel`
//   links, `#hashtags`). The Mattermost server itself is not run.
// - Discord: discord-markdown (simple-markdown with Discord's rules) with
//   embed rules (masked links allowed) for `content`, the embed title,
//   description and field values; the footer is plain text on Discord.
// - Teams: markdown-it (CommonMark, linkify on) for every TextBlock and
//   FactSet text, as the Adaptive Cards SDK does with markdown-it; TextRuns
//   are plain text, and their `selectAction` Action.OpenUrl is a link.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let commonmark, discord, MarkdownIt;
try {
  commonmark = require("@mattermost/commonmark");
  discord = require("discord-markdown");
  MarkdownIt = require("markdown-it");
} catch (error) {
  console.error(`chat_render.mjs: ${error.message}: run tests/verifiers/install.sh`);
  process.exit(3);
}

// --- Mattermost -------------------------------------------------------------

function mattermostServer(text) {
  for (const [from, to] of [["<!channel>", "@channel"], ["<!here>", "@here"], ["<!all>", "@all"]]) {
    text = text.split(from).join(to);
  }
  // replaceUserIds turns `<@ID>` of a known user into `@username`: any ID
  // counts here.
  text = text.replace(/<@([a-zA-Z0-9]+)>/g, "@$1");
  return text.replace(/<([^\n<|>]+)\|([^|\n>]+)>/g, "[$2]($1)");
}

function mattermost(message) {
  const out = { links: [], images: [], mentions: [], text: "" };
  const text = mattermostServer(String(message.text ?? ""));
  const tree = new commonmark.Parser().parse(text);
  const walker = tree.walker();
  let event;
  while ((event = walker.next())) {
    const node = event.node;
    if (!event.entering) continue;
    switch (node.type) {
      case "link":
        out.links.push(node.destination);
        break;
      case "image":
        out.images.push(node.destination);
        break;
      case "at_mention":
        out.mentions.push(`@${node.mentionName}`);
        break;
      case "channel_link":
        out.links.push(`~${node.channelName}`);
        break;
      case "hashtag":
        out.links.push(`#${node.hashtag}`);
        break;
      case "html_inline":
      case "html_block":
        out.images.push(`raw HTML: ${node.literal}`);
        break;
      case "text":
        out.text += node.literal;
        break;
      default:
        break;
    }
  }
  return out;
}

// --- Discord ----------------------------------------------------------------

/// The text a reader sees in rendered HTML.
function shown(html) {
  const entities = { lt: "<", gt: ">", amp: "&", quot: '"', "#39": "'", "#x27": "'" };
  return html.replace(/<[^>]*>/g, "").replace(/&(lt|gt|amp|quot|#39|#x27);/g, (_, e) => entities[e]);
}

function discordHtml(out, markdown) {
  const html = discord.toHTML(String(markdown), { embed: true });
  for (const m of html.matchAll(/<a [^>]*href="([^"]*)"/g)) out.links.push(m[1]);
  for (const m of html.matchAll(/<img [^>]*src="([^"]*)"/g)) out.images.push(m[1]);
  for (const m of html.matchAll(/<span class="d-mention[^"]*">([^<]*)<\/span>/g)) out.mentions.push(m[1]);
  out.text += shown(html) + "\n";
}

function discordMessage(message) {
  const out = { links: [], images: [], mentions: [], text: "" };
  if (message.content) discordHtml(out, message.content);
  for (const embed of message.embeds ?? []) {
    if (embed.title) discordHtml(out, embed.title);
    if (embed.description) discordHtml(out, embed.description);
    for (const field of embed.fields ?? []) discordHtml(out, field.value);
    if (embed.url) out.links.push(embed.url);
    if (embed.image?.url) out.images.push(embed.image.url);
    if (embed.thumbnail?.url) out.images.push(embed.thumbnail.url);
    if (embed.footer?.text) out.text += embed.footer.text + "\n";
  }
  return out;
}

// --- Teams ------------------------------------------------------------------

const markdownIt = new MarkdownIt({ linkify: true });

function teamsMarkdown(out, markdown) {
  const html = markdownIt.render(String(markdown));
  for (const m of html.matchAll(/<a [^>]*href="([^"]*)"/g)) out.links.push(m[1]);
  for (const m of html.matchAll(/<img [^>]*src="([^"]*)"/g)) out.images.push(m[1]);
  out.text += shown(html);
}

function teamsElement(out, element) {
  if (!element || typeof element !== "object") return;
  switch (element.type) {
    case "TextBlock":
      teamsMarkdown(out, element.text);
      break;
    case "FactSet":
      for (const fact of element.facts ?? []) {
        teamsMarkdown(out, fact.title);
        teamsMarkdown(out, fact.value);
      }
      break;
    case "RichTextBlock":
      for (const inline of element.inlines ?? []) {
        if (typeof inline === "string") {
          out.text += inline;
        } else if (inline.type === "TextRun") {
          out.text += inline.text;
          if (inline.selectAction) teamsElement(out, inline.selectAction);
        }
      }
      out.text += "\n";
      break;
    case "Image":
      out.images.push(element.url);
      break;
    case "Action.OpenUrl":
      out.links.push(element.url);
      break;
    default:
      break;
  }
  for (const key of ["items", "columns", "actions", "body"]) {
    for (const child of element[key] ?? []) teamsElement(out, child);
  }
  if (element.selectAction && element.type !== "RichTextBlock") teamsElement(out, element.selectAction);
}

function teams(message) {
  const out = { links: [], images: [], mentions: [], text: "" };
  for (const attachment of message.attachments ?? []) teamsElement(out, attachment.content);
  return out;
}

// ----------------------------------------------------------------------------

const renderers = { mattermost, discord: discordMessage, teams };
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--self-check") {
  const probe = mattermost({ text: "<!here> [x](https://example.com)" });
  process.exit(probe.mentions.length === 1 && probe.links.length === 1 ? 0 : 1);
}
const render = renderers[args[0]];
if (!render || args.length < 2) {
  console.error("usage: node chat_render.mjs mattermost|discord|teams BODY...");
  process.exit(2);
}
for (const path of args.slice(1)) {
  console.log(JSON.stringify(render(JSON.parse(readFileSync(path, "utf8")))));
}
