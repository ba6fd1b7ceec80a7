// distributed-flood: 5,000/s over 10,000 anonymous identities (X-Forwarded-For from a trusted
// proxy) plus the 20 legitimate keys. Needs DAM_TRUSTED_PROXIES to include the k6 host.
import exec from 'k6/execution';
import { address, chat, legitimate } from './lib.js';

export { legitimate };

export const options = {
  scenarios: {
    botnet: {
      executor: 'constant-arrival-rate', rate: 5000, timeUnit: '1s', duration: '60s',
      preAllocatedVUs: 500, maxVUs: 5000, exec: 'botnet',
    },
    legit: {
      executor: 'constant-arrival-rate', rate: 20, timeUnit: '1s', duration: '60s',
      preAllocatedVUs: 20, maxVUs: 200, exec: 'legitimate',
    },
  },
  thresholds: { 'checks{scenario:legit}': ['rate>=0.99'] },
};

export function botnet() {
  chat(address(exec.scenario.iterationInTest % 10000), false);
}
