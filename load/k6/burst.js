// burst: idle 5 s, then 20,000 requests within 2 s, then idle while the backlog drains.
import exec from 'k6/execution';
import { address, chat, legitimate } from './lib.js';

export { legitimate };

export const options = {
  scenarios: {
    burst: {
      executor: 'constant-arrival-rate', rate: 10000, timeUnit: '1s', duration: '2s',
      startTime: '5s', preAllocatedVUs: 1000, maxVUs: 20000, exec: 'burst',
    },
    legit: {
      executor: 'constant-arrival-rate', rate: 20, timeUnit: '1s', duration: '40s',
      preAllocatedVUs: 20, maxVUs: 200, exec: 'legitimate',
    },
  },
  thresholds: { 'checks{scenario:legit}': ['rate>=0.99'] },
};

export function burst() {
  chat(address(exec.scenario.iterationInTest % 20000), false);
}
