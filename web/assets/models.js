// The model catalogue as the pages show it (GET /api/models, docs/API.md §8): what a chat model
// and an image size cost, in words, and a reply's cost and tokens.

import { api } from './api.js';

/** The models the user may pick: `{chat: [...], image: [...]}`, defaults first. */
export function loadModels() {
  return api('GET', '/api/models');
}

function credits(n) {
  return `${n.toLocaleString()} credit${n === 1 ? '' : 's'}`;
}

/** "1 credit per message", or "150 / 600 credits per 1M tokens in / out". */
export function chatPrice(model) {
  if (model.message_price !== null && model.message_price !== undefined) return `${credits(model.message_price)} per message`;
  return `${model.input_price.toLocaleString()} / ${model.output_price.toLocaleString()} credits per 1M tokens in / out`;
}

/** What an image of `width`×`height` costs with `model`, or null when the model has no price for that size. */
export function imagePrice(model, width, height) {
  if (model.prices) return model.prices[`${width}x${height}`] ?? null;
  const { min, max } = model.sizes;
  return width >= min && width <= max && height >= min && height <= max ? model.price : null;
}

/** "3 credits · 12 in / 40 out tokens (estimated)" for an ended reply; its status when it did not complete. */
export function replyCost(message) {
  if (message.charged === null || message.charged === undefined) return '';
  const parts = [credits(message.charged)];
  if (message.usage) {
    const { input_tokens: input, output_tokens: output, estimated } = message.usage;
    parts.push(`${input.toLocaleString()} in / ${output.toLocaleString()} out tokens${estimated ? ' (estimated)' : ''}`);
  }
  if (message.model) parts.unshift(message.model);
  const ending = { stopped: 'stopped', failed: 'failed, not charged', interrupted: 'interrupted, not charged' }[message.status];
  if (ending) parts.push(ending);
  return parts.join(' · ');
}
