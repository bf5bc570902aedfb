// The page's client: OrderService generated from protos/ by protoc-gen-es, over Connect or gRPC-Web.
// The edge is this page's origin, or ?edge=http://host:port (a cross-origin edge needs Settings.cors).
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { OrderService } from '../gen/orders/v1/orders_pb.js';

const baseUrl = new URLSearchParams(location.search).get('edge') ?? location.origin;
const $ = (id) => document.getElementById(id);

function orders(protocol) {
  const transport = protocol === 'grpc-web'
    ? createGrpcWebTransport({ baseUrl })
    : createConnectTransport({ baseUrl, useBinaryFormat: protocol === 'connect-proto' });
  return createClient(OrderService, transport);
}

function show(result) {
  const row = $('results').insertRow();
  row.dataset.id = result.orderId;
  const at = result.processedAt ? timestampDate(result.processedAt).toISOString() : '';
  for (const text of [result.orderId, result.status, at, String(result.itemsCount)]) {
    row.insertCell().textContent = text;
  }
}

let running = null;

async function process() {
  const ids = $('ids').value.split(/\s+/).filter(Boolean);
  const controller = new AbortController();
  running = controller;
  $('results').replaceChildren();
  $('error').textContent = '';
  $('first').textContent = '-';
  $('count').textContent = '0';
  $('state').textContent = 'streaming';
  $('process').disabled = true;
  $('stop').disabled = false;
  const started = performance.now();
  let count = 0;
  try {
    const stream = orders($('protocol').value).processOrders({ orderIds: ids }, { signal: controller.signal });
    for await (const result of stream) {
      if (count === 0) $('first').textContent = `${(performance.now() - started).toFixed(1)} ms`;
      count += 1;
      show(result);
      $('count').textContent = String(count);
    }
    $('state').textContent = 'complete';
  } catch (error) {
    if (controller.signal.aborted) {
      $('state').textContent = 'stopped';
    } else {
      const failure = ConnectError.from(error);
      $('state').textContent = 'failed';
      $('error').textContent = `${Code[failure.code]}: ${failure.rawMessage}`;
    }
  } finally {
    running = null;
    $('process').disabled = false;
    $('stop').disabled = true;
  }
}

$('process').addEventListener('click', process);
// Aborting the fetch closes the stream's connection: the server cancels the handler.
$('stop').addEventListener('click', () => running?.abort());
