// k6 cross-check of `emergence load --mode fanout`: VUS subscribers in one Emergence thread,
// each timing every load message (the body carries its scheduled send time in µs, "lg:<µs>:...")
// against its own clock. The sender is `emergence load --clients 0`, started by bench/bench.py.
//
// Env: WS_URL (ws://host:port/ws?token=...), THREAD, VUS, HOLD_MS.
import ws from 'k6/ws';
import { Counter, Trend } from 'k6/metrics';

const latency = new Trend('delivery_latency', true);
const deliveries = new Counter('deliveries');

const VUS = Number(__ENV.VUS || 100);
const HOLD_MS = Number(__ENV.HOLD_MS || 20000);

export const options = {
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      maxDuration: `${Math.ceil(HOLD_MS / 1000) + 30}s`,
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max', 'count'],
};

export default function () {
  ws.connect(__ENV.WS_URL, {}, (socket) => {
    socket.on('open', () => {
      socket.send(JSON.stringify({ type: 'subscribe', thread: __ENV.THREAD }));
    });
    socket.on('message', (text) => {
      const at = text.indexOf('"lg:');
      if (at < 0) return;
      const ts = parseInt(text.substring(at + 4, text.indexOf(':', at + 4)), 10);
      latency.add(Date.now() - ts / 1000);
      deliveries.add(1);
    });
    socket.setTimeout(() => socket.close(), HOLD_MS);
  });
}
