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

/**
 * Where the access proxy sends a browser for a second factor (a `step_up` decision): the value of
 * `access/proxy/step-up.ts`'s MFA_CHALLENGE_PATH (test/mesh/people.test.ts checks they agree), not
 * imported because the CLI loads this module at start, without the proxy.
 */
export const MFA_CHALLENGE_PATH = '/.nevertrust/mfa/challenge';

/**
 * Why policy sees no device on a request without a device certificate: the value of
 * `access/proxy/device.ts`'s NO_DEVICE_REASON (test/mesh/people.test.ts checks they agree).
 */
export const NO_DEVICE_REASON = 'no device certificate presented';

/** The back-office path the seed policy lets out only to a managed device (examples/policies/people). */
export const EXPORT_PATH = '/reports/export';

/** One people's step: what a person (or a client without a session) does, and the status it must get. */
export interface PeopleStep {
  label: string;
  /**
   * `allowed`: the person may; `denied`: the proxy must refuse (403, or 401 without a session);
   * `step-up`: the person may, after a second factor: the proxy sends the browser to its MFA challenge.
   */
  kind: 'allowed' | 'denied' | 'step-up';
  /**
   * `page`: a page load without following redirects (a step-up's 303); `mfa`: opens the page and, when
   * the proxy asks for a second factor, enrolls TOTP (once) and answers the challenge with a code.
   */
  action: 'sign-in' | 'get' | 'page' | 'mfa' | 'no-session' | 'forged-assertion' | 'sign-out';
  who?: Person;
  /**
   * The person's other browser: a session of its own that never passes MFA (so the step-up is seen
   * every round, and signing out there leaves the MFA of the first browser's session alone).
   */
  other?: true;
  path: string;
  expect: number;
  /** The page must name this person (the app says who the verified assertion says is calling). */
  shows?: Person;
  /** The answer must send the browser to this path (`Location`, any query). */
  to?: string;
  /** The page must say this (a refusal's reason). */
  says?: string;
  /**
   * A step of the device pair: the same request from alice's managed device (her client presents
   * the device certificate) and from a client without one; the summary shows both decisions.
   */
  device?: 'managed' | 'none';
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
  {
    label: 'alice GET /admin without MFA (2nd browser)',
    kind: 'step-up',
    action: 'page',
    who: 'alice',
    other: true,
    path: '/admin',
    expect: 303,
    to: MFA_CHALLENGE_PATH,
  },
  {
    label: 'alice passes MFA (TOTP code) and opens /admin',
    kind: 'allowed',
    action: 'mfa',
    who: 'alice',
    path: '/admin',
    expect: 200,
    shows: 'alice',
  },
  // `shows`: the app's page, not the MFA challenge's (also a 200).
  {
    label: 'alice GET /admin (admins)',
    kind: 'allowed',
    action: 'get',
    who: 'alice',
    path: '/admin',
    expect: 200,
    shows: 'alice',
  },
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
  // The same request, the same person: only the device differs (the seed policy's
  // backoffice-export-managed-device), so one is allowed and the other fails closed.
  {
    label: `alice GET ${EXPORT_PATH} from her managed device`,
    kind: 'allowed',
    action: 'get',
    who: 'alice',
    path: EXPORT_PATH,
    expect: 200,
    shows: 'alice',
    device: 'managed',
  },
  {
    label: `alice GET ${EXPORT_PATH}, 2nd browser, no device`,
    kind: 'denied',
    action: 'page',
    who: 'alice',
    other: true,
    path: EXPORT_PATH,
    expect: 403,
    says: NO_DEVICE_REASON,
    device: 'none',
  },
  {
    label: 'alice signs out, is refused, signs in again',
    kind: 'allowed',
    action: 'sign-out',
    who: 'alice',
    other: true,
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

/**
 * A step ended as it must: the expected status, the page names the expected person, a redirect
 * goes where it must, and a refusal says why it must.
 */
export function judgePeople(step: PeopleStep, r: { status: number; body: string; location?: string }): boolean {
  if (r.status !== step.expect) return false;
  if (step.to !== undefined && !sameOriginPath(r.location, step.to)) return false;
  if (step.says !== undefined && !r.body.includes(step.says)) return false;
  return step.shows === undefined || r.body.includes(`id="email">${PEOPLE[step.shows].email}<`);
}

/** `location` is a reference on the same origin (relative) to `path`, with any query. */
function sameOriginPath(location: string | undefined, path: string): boolean {
  const base = 'https://origin.invalid';
  try {
    const u = new URL(location ?? 'about:blank', base);
    return u.origin === base && u.pathname === path;
  } catch {
    return false;
  }
}
