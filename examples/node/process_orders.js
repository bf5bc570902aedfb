#!/usr/bin/env node
// Call rill's OrderService.ProcessOrders from Node.js and print each result as a JSON line as soon
// as it arrives. The contract is read from protos/ at run time (@grpc/proto-loader): no generated code.
//
//   node examples/node/process_orders.js [--address HOST:PORT] [--cancel-after N] [--timeout S]
//                                        [--request-id ID] [--token TOKEN] ID...
//
// --cancel-after N cancels the call on the wire after N results (and exits 0); Ctrl-C cancels it and
// exits 130. An error status exits 64 + its code (as grpcurl and `python -m client` do) and prints
// the code, the message and the google.rpc.BadRequest field violations to stderr.
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
// protobufjs is what @grpc/proto-loader parses with; use that copy to decode the status details.
const protobuf = require(require.resolve('protobufjs', { paths: [require.resolve('@grpc/proto-loader')] }));

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
// google/api/annotations.proto (the HTTP routes of each RPC), imported by the contracts.
const GOOGLEAPIS = path.resolve(__dirname, '..', '..', 'third_party', 'googleapis');
const USAGE =
  'usage: node process_orders.js [--address HOST:PORT] [--cancel-after N] [--timeout SECONDS] ' +
  '[--request-id ID] [--token TOKEN] ID...';

function parse(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      address: { type: 'string', default: process.env.RILL_ADDRESS || '127.0.0.1:50051' },
      'cancel-after': { type: 'string' },
      timeout: { type: 'string' },
      'request-id': { type: 'string' },
      token: { type: 'string', default: process.env.RILL_TOKEN },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (positionals.length === 0) throw new Error('give at least one order id');
  const cancelAfter = values['cancel-after'] === undefined ? null : Number(values['cancel-after']);
  if (cancelAfter !== null && !(Number.isInteger(cancelAfter) && cancelAfter >= 0)) {
    throw new Error('--cancel-after takes a whole number');
  }
  const timeout = values.timeout === undefined ? null : Number(values.timeout);
  if (timeout !== null && !(timeout > 0)) throw new Error('--timeout takes a number of seconds > 0');
  return { ...values, cancelAfter, timeout, orderIds: positionals };
}

// google.rpc.Status and BadRequest, just the fields needed to show field violations.
const statusTypes = protobuf.parse(`
  syntax = "proto3";
  package details;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`, { keepCase: true }).root;

function violationsOf(metadata) {
  const raw = metadata && metadata.get('grpc-status-details-bin')[0];
  if (!raw) return [];
  const status = statusTypes.lookupType('details.Status').decode(raw);
  const badRequest = statusTypes.lookupType('details.BadRequest');
  return status.details
    .filter((detail) => detail.type_url.endsWith('/google.rpc.BadRequest'))
    .flatMap((detail) => badRequest.decode(detail.value).field_violations);
}

// A google.protobuf.Timestamp as RFC 3339 with microseconds, as the Python client prints it.
function rfc3339(timestamp) {
  if (!timestamp) return null;
  const seconds = Number(timestamp.seconds);
  const base = new Date(seconds * 1000).toISOString().slice(0, 19);
  return `${base}.${String(Math.floor(timestamp.nanos / 1000)).padStart(6, '0')}Z`;
}

function main() {
  let options;
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    console.error(`process_orders: ${error.message}\n${USAGE}`);
    process.exit(2);
  }

  const definition = protoLoader.loadSync('orders/v1/orders.proto', {
    includeDirs: [PROTOS, GOOGLEAPIS],
    keepCase: true, // field names as in the .proto (order_id), like grpcurl and the Python client
    longs: String,
    enums: String,
    defaults: true,
  });
  const { OrderService } = grpc.loadPackageDefinition(definition).orders.v1;
  const client = new OrderService(options.address, grpc.credentials.createInsecure());

  const metadata = new grpc.Metadata();
  if (options['request-id']) metadata.set('x-request-id', options['request-id']);
  if (options.token) metadata.set('authorization', `Bearer ${options.token}`);
  const callOptions = options.timeout === null ? {} : { deadline: Date.now() + options.timeout * 1000 };

  const call = client.ProcessOrders({ order_ids: options.orderIds }, metadata, callOptions);
  let received = 0;
  let cancelledByUs = false;

  const cancel = (why, exitCode) => {
    if (cancelledByUs) return;
    cancelledByUs = true;
    call.cancel(); // RST_STREAM: the server's handler is cancelled and stops processing
    console.error(`process_orders: ${why}: cancelled after ${received} results`);
    process.exitCode = exitCode;
  };

  if (options.cancelAfter === 0) cancel('--cancel-after 0', 0);

  call.on('data', (result) => {
    if (cancelledByUs) return; // messages already in flight when we cancelled
    received += 1;
    process.stdout.write(`${JSON.stringify({ ...result, processed_at: rfc3339(result.processed_at) })}\n`);
    if (options.cancelAfter !== null && received >= options.cancelAfter) {
      cancel(`--cancel-after ${options.cancelAfter}`, 0);
    }
  });
  call.on('error', (error) => {
    if (cancelledByUs && error.code === grpc.status.CANCELLED) return;
    const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code) || error.code;
    console.error(`process_orders: ${name}: ${error.details}`);
    for (const violation of violationsOf(error.metadata)) {
      console.error(`  ${violation.field}: ${violation.description}`);
    }
    const requestId = error.metadata && error.metadata.get('x-request-id')[0];
    if (requestId) console.error(`  request id: ${requestId}`);
    process.exitCode = 64 + error.code;
  });
  call.on('close', () => client.close());

  process.once('SIGINT', () => cancel('interrupted', 130));
}

main();
