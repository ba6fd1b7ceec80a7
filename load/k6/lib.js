// Shared pieces of the Traffic Dam k6 scenarios.
import http from 'k6/http';
import { check } from 'k6';

export const BASE = __ENV.DAM_URL || 'http://127.0.0.1:8080';
export const BODY = JSON.stringify({
  model: 'm',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'Summarise the news.' }],
});

// One chat request as a given identity: an API key, or a forwarded-for address.
export function chat(identity, byKey) {
  const headers = { 'Content-Type': 'application/json' };
  if (byKey) {
    headers.Authorization = `Bearer ${identity}`;
  } else {
    headers['X-Forwarded-For'] = identity;
  }
  return http.post(`${BASE}/v1/chat/completions`, BODY, { headers, timeout: '30s' });
}

export function legitimate() {
  const res = chat(`sk-legit-${__VU % 20}`, true);
  check(res, { 'legit answered 200': (r) => r.status === 200 });
}

export function address(n) {
  return `198.18.${Math.floor(n / 256) % 256}.${n % 256}`;
}
