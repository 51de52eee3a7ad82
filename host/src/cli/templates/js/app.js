// {{name}}: a kfp-event-router plugin (JavaScript) that adds a configured field to every JSON
// object payload. Edit `handle` to make it yours; see README.md.

import * as kfp from './kfp-plugin.js';

let field = { name: '', value: null };

export const transform = {
  /** @param {string} config */
  init(config) {
    const settings = kfp.parseConfig(config, ['name', 'value']);
    if (!('name' in settings) || !('value' in settings)) {
      throw 'invalid plugin config: `name` and `value` are required';
    }
    field = settings;
  },

  /** @param {kfp.Event} event @param {kfp.Payload} payload @returns {kfp.Action} */
  handle(event, payload) {
    let body;
    try {
      body = JSON.parse(new TextDecoder().decode(payload.body));
    } catch {
      return kfp.pass(); // not JSON: leave it alone
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return kfp.pass();
    body[field.name] = field.value;
    return kfp.replaceJson(body);
  },
};
