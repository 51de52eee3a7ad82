// Helpers for kfp-event-router plugins written in JavaScript (componentize-js).
//
// The contract is `wit/0.2.0/world.wit` (kfp:event-router@0.2.0, which the router still
// runs). A plugin module exports `transform = { init(config), handle(event, payload) }`:
// `init` throws a string to refuse its configuration, `handle` returns an action (these
// helpers build them) or throws a string.
// WIT names are camelCase here (`event.runId`), `option`s are `undefined` when unknown.

import { log as hostLog } from 'kfp:event-router/host@0.2.0';

/**
 * @typedef {{ body: Uint8Array, contentType: string }} Payload
 * @typedef {{ tag: 'pass' } | { tag: 'drop' } |
 *   { tag: 'replace', val: { body: Uint8Array, contentType: string, headers: [string, string][] } }} Action
 * @typedef {{ id?: string, name: string, fullName: string, displayName?: string, nodeType?: string,
 *   phase?: string, message?: string, templateName?: string, startedAt?: string, finishedAt?: string }} Node
 * @typedef {{ name: string, displayName?: string, iteration?: number, dagPath: string[], cached: boolean,
 *   podName?: string, message?: string }} Task
 * @typedef {{ id: string, reason: string, eventType: string, message: string, namespace: string,
 *   cluster?: string, eventUid: string, eventTime?: string, eventCount: number, synthesized: boolean, attempt: number,
 *   workflowName: string, workflowUid?: string, runId?: string, runName?: string, pipelineName?: string,
 *   recurringRunName?: string, phase?: string, startedAt?: string, finishedAt?: string,
 *   workflowMessage?: string, parameters: [string, string][], labels: [string, string][],
 *   nodeName: string, node?: Node, task?: Task, endpoint: string,
 *   format: 'kfp' | 'extended' | 'cloudevents' }} Event
 */

/** Keep the payload unchanged and continue with the next plugin. @returns {Action} */
export const pass = () => ({ tag: 'pass' });

/** Do not deliver this payload to this endpoint. @returns {Action} */
export const drop = () => ({ tag: 'drop' });

/**
 * Replace the payload with `value` as `application/json`.
 * @param {unknown} value @param {[string, string][]} [headers] @returns {Action}
 */
export function replaceJson(value, headers = []) {
  const body = new TextEncoder().encode(JSON.stringify(value));
  return { tag: 'replace', val: { body, contentType: 'application/json', headers } };
}

/** The payload body parsed as JSON. @param {Payload} payload */
export function jsonBody(payload) {
  try {
    return JSON.parse(new TextDecoder().decode(payload.body));
  } catch (e) {
    throw `payload is not valid JSON: ${e}`;
  }
}

/**
 * The configuration JSON as an object; throws naming an unknown key.
 * @param {string} config @param {string[]} known @returns {Record<string, any>}
 */
export function parseConfig(config, known) {
  let settings;
  try {
    settings = JSON.parse(config || '{}');
  } catch (e) {
    throw `invalid plugin config: ${e}`;
  }
  const unknown = Object.keys(settings).filter((k) => !known.includes(k)).sort();
  if (unknown.length > 0) {
    throw `invalid plugin config: unknown field \`${unknown[0]}\`, expected one of ${known.join(', ')}`;
  }
  return settings;
}

/**
 * 'failed', 'succeeded', 'running' or 'other': from the reason, else the phase, else the type.
 * @param {Event} event
 */
export function outcome(event) {
  for (const word of [event.reason, event.phase ?? '']) {
    if (/(Failed|Error|TimedOut|Failure)$/.test(word)) return 'failed';
    if (word.endsWith('Succeeded')) return 'succeeded';
    if (/(Running|Pending)$/.test(word)) return 'running';
  }
  return event.eventType.toLowerCase() === 'warning' ? 'failed' : 'other';
}

/** The run name, else the workflow name. @param {Event} event */
export const displayName = (event) => event.runName || event.workflowName;

/** The value of run parameter `name`. @param {Event} event @param {string} name */
export const parameter = (event, name) => event.parameters.find(([k]) => k === name)?.[1];

/**
 * `template` with `{run_id}`, `{namespace}`, `{workflow_name}` filled; undefined when one is unknown.
 * @param {string} template @param {Event} event
 */
export function fill(template, event) {
  const values = { run_id: event.runId, namespace: event.namespace, workflow_name: event.workflowName };
  let out = template;
  for (const [key, value] of Object.entries(values)) {
    if (!out.includes(`{${key}}`)) continue;
    if (!value) return undefined;
    out = out.replaceAll(`{${key}}`, value);
  }
  return out;
}

/** Writes to the router's log. @param {'trace'|'debug'|'info'|'warn'|'error'} level @param {string} message */
export const log = (level, message) => hostLog(level, message);
