// steady: 80 requests/s for 5 minutes from 80 well-behaved keys: the latency the dam adds.
import { check } from 'k6';
import { chat } from './lib.js';

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate', rate: 80, timeUnit: '1s', duration: '5m',
      preAllocatedVUs: 80, maxVUs: 800, exec: 'steady',
    },
  },
  thresholds: { checks: ['rate>=0.999'], http_req_duration: ['p(95)<500'] },
};

export function steady() {
  const res = chat(`sk-legit-${__VU % 80}`, true);
  check(res, { 'answered 200': (r) => r.status === 200 });
}
