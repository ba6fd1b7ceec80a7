// single-abuser: one key floods at 5,000/s for 60 s; 20 legitimate keys send 1/s each.
import { chat, legitimate } from './lib.js';

export { legitimate };

export const options = {
  scenarios: {
    abuser: {
      executor: 'constant-arrival-rate', rate: 5000, timeUnit: '1s', duration: '60s',
      preAllocatedVUs: 500, maxVUs: 5000, exec: 'abuser',
    },
    legit: {
      executor: 'constant-arrival-rate', rate: 20, timeUnit: '1s', duration: '60s',
      preAllocatedVUs: 20, maxVUs: 200, exec: 'legitimate',
    },
  },
  thresholds: {
    'checks{scenario:legit}': ['rate>=0.995'],
    'http_req_duration{scenario:abuser}': ['p(99)<10'],
  },
};

export function abuser() {
  chat('sk-abuser-0', true);
}
