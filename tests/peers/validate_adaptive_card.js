// Validates a Teams Workflows webhook message with Microsoft's Adaptive Cards parser (npm
// `adaptivecards`): reads the message JSON on standard input, prints
// {"errors": [...], "warnings": [...], "card": <the card as the parser understood it>} and exits
// 1 when there is an error. Used by tests/deliverers/test_chat_teams.py.
"use strict";
const AC = require("adaptivecards/dist/adaptivecards.js");

const ATTACHMENT = "application/vnd.microsoft.card.adaptive";
const input = require("fs").readFileSync(0, "utf8");
const errors = [];
const warnings = [];
let parsed = null;
let message;
try {
  message = JSON.parse(input);
} catch (e) {
  errors.push(`not JSON: ${e.message}`);
}
if (message !== undefined) {
  if (message.type !== "message") errors.push('message.type must be "message"');
  const attachments = Array.isArray(message.attachments) ? message.attachments : [];
  if (attachments.length !== 1) errors.push("message.attachments must hold one card");
  for (const attachment of attachments) {
    if (attachment.contentType !== ATTACHMENT) errors.push(`contentType must be ${ATTACHMENT}`);
    const content = attachment.content;
    if (!content || content.type !== "AdaptiveCard") {
      errors.push('attachment content must be an object of type "AdaptiveCard"');
      continue;
    }
    const card = new AC.AdaptiveCard();
    const context = new AC.SerializationContext();
    card.parse(content, context);
    for (let i = 0; i < context.eventCount; i++) {
      const event = context.getEventAt(i);
      errors.push(`parse: ${AC.ValidationEvent[event.event]}: ${event.message}`);
    }
    const results = card.validateProperties();
    for (const event of results.validationEvents) {
      const text = `${AC.ValidationEvent[event.event]}: ${event.message}`;
      (event.phase === AC.ValidationPhase.Validation && event.event === AC.ValidationEvent.Hint
        ? warnings
        : errors
      ).push(`validate: ${text}`);
    }
    if (!card.version || card.version.toString() !== String(content.version)) {
      errors.push(`version ${content.version} not understood (parser's latest: ${AC.Versions.latest})`);
    }
    parsed = card.toJSON();
  }
}
process.stdout.write(JSON.stringify({ errors, warnings, card: parsed }));
process.exit(errors.length ? 1 : 0);
