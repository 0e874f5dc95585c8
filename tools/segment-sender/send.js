#!/usr/bin/env node
// Sends events to a webhook URL with Segment's own Webhooks (Actions) destination code: the
// `webhook` destination of @segment/action-destinations run by @segment/actions-core, exactly as
// Segment's cloud runs it (mapping, request client, `extendRequest` signing, headers).
//
//   node send.js single|batch --url URL [--bearer] [--sign-full-body] < events.json
//
// events.json is a JSON array of Segment events: `single` sends the first one (the `send`
// action's perform), `batch` sends them all as one batch (its performBatch). The destination's
// Shared Secret setting comes from SEGMENT_SHARED_SECRET (unset: no X-Signature); --bearer adds
// `Authorization: Bearer $SEGMENT_BEARER_TOKEN` to the mapping's Headers. --sign-full-body signs
// the whole batch body instead of its first event, as a change proposed to Segment's code does.
// Credentials come from the environment only, so they never show in `ps`.
//
// Prints one JSON line: {"status", "body" (the answer, parsed when JSON), "sent": {"headers"
// (names only, never values), "events"}}. Exit 0 whenever an answer came back, 1 otherwise.
'use strict'

const { createHmac } = require('crypto')
const { parseArgs } = require('util')
const { Destination } = require('@segment/actions-core')
const webhook = require('@segment/action-destinations/dist/destinations/webhook').default

const SUBSCRIBE = ['track', 'identify', 'page', 'screen', 'group', 'alias'].map((t) => `type = "${t}"`).join(' or ')

function signWholeBatch(context) {
  const { settings, payload } = context
  if (!Array.isArray(payload) || !settings.sharedSecret) {
    return webhook.extendRequest(context)
  }
  // performBatch sends JSON.stringify of the events' `data`: sign exactly that string.
  const body = JSON.stringify(payload.map(({ data }) => data))
  const digest = createHmac('sha1', settings.sharedSecret).update(body, 'utf8').digest('hex')
  return { headers: { 'X-Signature': digest } }
}

function readStdin() {
  const chunks = []
  return new Promise((resolve, reject) => {
    process.stdin.on('data', (chunk) => chunks.push(chunk))
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}

function report(response, events) {
  const body = response.data !== undefined && typeof response.data !== 'string' ? response.data : response.content
  const headers = response.request ? [...response.request.headers.keys()].sort() : []
  return { status: response.status, body, sent: { headers, events } }
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      url: { type: 'string' },
      bearer: { type: 'boolean', default: false },
      'sign-full-body': { type: 'boolean', default: false }
    },
    allowPositionals: true
  })
  const mode = positionals[0]
  if (!['single', 'batch'].includes(mode) || !values.url) {
    throw new Error('usage: node send.js single|batch --url URL [--bearer] [--sign-full-body] < events.json')
  }
  const events = JSON.parse(await readStdin())
  const mapping = { url: values.url, method: 'POST', data: { '@path': '$.' } }
  if (values.bearer) {
    if (!process.env.SEGMENT_BEARER_TOKEN) throw new Error('--bearer needs SEGMENT_BEARER_TOKEN')
    mapping.headers = { Authorization: `Bearer ${process.env.SEGMENT_BEARER_TOKEN}` }
  }
  const definition = values['sign-full-body'] ? { ...webhook, extendRequest: signWholeBatch } : webhook
  const destination = new Destination(definition)
  const settings = { subscription: { subscribe: SUBSCRIBE, partnerAction: 'send', mapping } }
  if (process.env.SEGMENT_SHARED_SECRET) settings.sharedSecret = process.env.SEGMENT_SHARED_SECRET
  const sent = mode === 'single' ? [events[0]] : events
  try {
    await (mode === 'single' ? destination.onEvent(sent[0], settings) : destination.onBatch(sent, settings))
  } catch (error) {
    // An HTTP error status is an answer to report; anything else (no answer at all) is not.
    if (destination.responses.length === 0) throw error
  }
  const last = destination.responses[destination.responses.length - 1]
  if (!last) throw new Error('the destination sent no request (did the events match the subscription?)')
  process.stdout.write(JSON.stringify(report(last, sent.length)) + '\n')
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ error: String(error && error.message ? error.message : error) }) + '\n')
  process.exitCode = 1
})
