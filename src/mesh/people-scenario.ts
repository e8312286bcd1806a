/**
 * People's traffic in the local mesh: what alice, bob and a client without a session do at the
 * back-office through the access proxy, and the status each must get. Kept apart from people.ts
 * (which runs the provider and the proxy) so the CLI loads it without them.
 */

export type Person = 'alice' | 'bob';
export const PEOPLE: Record<Person, { email: string; groups: string[]; role: string }> = {
  alice: { email: 'alice@example.com', groups: ['admins', 'staff'], role: 'admin' },
  bob: { email: 'bob@example.com', groups: ['staff'], role: 'staff' },
};

/** One people's step: what a person (or a client without a session) does, and the status it must get. */
export interface PeopleStep {
  label: string;
  /** `allowed`: the person may; `denied`: the proxy must refuse (403, or 401 without a session). */
  kind: 'allowed' | 'denied';
  action: 'sign-in' | 'get' | 'no-session' | 'forged-assertion' | 'sign-out';
  who?: Person;
  path: string;
  expect: number;
  /** The page must name this person (the app says who the verified assertion says is calling). */
  shows?: Person;
}

export const PEOPLE_STEPS: readonly PeopleStep[] = [
  {
    label: 'alice signs in (OIDC code flow, PKCE)',
    kind: 'allowed',
    action: 'sign-in',
    who: 'alice',
    path: '/',
    expect: 200,
    shows: 'alice',
  },
  {
    label: 'bob signs in (OIDC code flow, PKCE)',
    kind: 'allowed',
    action: 'sign-in',
    who: 'bob',
    path: '/',
    expect: 200,
    shows: 'bob',
  },
  { label: 'alice GET /', kind: 'allowed', action: 'get', who: 'alice', path: '/', expect: 200, shows: 'alice' },
  { label: 'alice GET /reports', kind: 'allowed', action: 'get', who: 'alice', path: '/reports', expect: 200 },
  { label: 'alice GET /admin (admins)', kind: 'allowed', action: 'get', who: 'alice', path: '/admin', expect: 200 },
  { label: 'bob GET /', kind: 'allowed', action: 'get', who: 'bob', path: '/', expect: 200, shows: 'bob' },
  { label: 'bob GET /reports', kind: 'allowed', action: 'get', who: 'bob', path: '/reports', expect: 200 },
  { label: 'bob GET /admin (staff only)', kind: 'denied', action: 'get', who: 'bob', path: '/admin', expect: 403 },
  { label: 'API client without a session', kind: 'denied', action: 'no-session', path: '/reports', expect: 401 },
  {
    label: 'bob forges an admin assertion for /admin',
    kind: 'denied',
    action: 'forged-assertion',
    who: 'bob',
    path: '/admin',
    expect: 403,
  },
  {
    label: 'bob forges an assertion: the app still sees bob',
    kind: 'allowed',
    action: 'forged-assertion',
    who: 'bob',
    path: '/reports',
    expect: 200,
    shows: 'bob',
  },
  {
    label: 'alice signs out, is refused, signs in again',
    kind: 'allowed',
    action: 'sign-out',
    who: 'alice',
    path: '/',
    expect: 200,
  },
  {
    label: 'bob signs out, is refused, signs in again',
    kind: 'allowed',
    action: 'sign-out',
    who: 'bob',
    path: '/',
    expect: 200,
  },
];

export interface PeopleStepResult {
  step: PeopleStep;
  status: number;
  asExpected: boolean;
  detail: string;
}

/** A step ended as it must: the expected status, and the page names the expected person. */
export function judgePeople(step: PeopleStep, r: { status: number; body: string }): boolean {
  if (r.status !== step.expect) return false;
  return step.shows === undefined || r.body.includes(`id="email">${PEOPLE[step.shows].email}<`);
}
