// discord-message: a kfp-event-router plugin (JavaScript) that turns events into Discord
// webhook messages with one embed, coloured by outcome. See README.md.

import * as kfp from './kfp-plugin.js';

const KNOWN = ['username', 'avatar_url', 'kfp_ui_url', 'events'];
const COLOURS = { failed: 0xe01e5a, succeeded: 0x2eb67d, running: 0x1d9bd1, other: 0x9e9e9e };
const VERBS = { failed: 'failed', succeeded: 'succeeded', running: 'is running', other: 'changed' };

let settings = {};

/** A Discord embed field, or nothing when `value` is empty. */
function field(name, value, inline = true) {
  return value === undefined || value === '' ? [] : [{ name, value: String(value).slice(0, 1024), inline }];
}

export const transform = {
  init(config) {
    settings = kfp.parseConfig(config, KNOWN);
    settings.events ??= 'runs';
    if (!['runs', 'all'].includes(settings.events)) {
      throw 'invalid plugin config at events: use "runs" (run-level events only) or "all"';
    }
  },

  handle(event, payload) {
    const step = event.task?.name || event.node?.name || undefined;
    if (settings.events === 'runs' && step !== undefined) return kfp.drop();
    const outcome = kfp.outcome(event);
    const subject = step === undefined ? kfp.displayName(event) : `${kfp.displayName(event)} › ${step}`;
    const url = settings.kfp_ui_url ? kfp.fill(settings.kfp_ui_url, event) : undefined;
    const embed = {
      title: `${subject} ${VERBS[outcome]}`.slice(0, 256),
      color: COLOURS[outcome],
      fields: [
        ...field('Pipeline', event.pipelineName),
        ...field('Namespace', event.namespace),
        ...field('Phase', event.phase),
        ...field('Attempt', event.attempt > 1 ? event.attempt : undefined),
        ...field('Run', event.runId, false),
      ],
      footer: { text: `${event.reason} · ${event.workflowName}` },
    };
    const description = (event.workflowMessage ?? event.message).slice(0, 4096);
    if (description) embed.description = description;
    if (url) embed.url = url;
    if (event.eventTime) embed.timestamp = event.eventTime;
    const body = { embeds: [embed], allowed_mentions: { parse: [] } };
    if (settings.username) body.username = settings.username;
    if (settings.avatar_url) body.avatar_url = settings.avatar_url;
    return kfp.replaceJson(body);
  },
};
