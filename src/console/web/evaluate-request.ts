/** The policy page's "evaluate this request" form, as the decision API's request. Pure. */

/** The request the evaluate form builds: the decision API's shape, only the fields filled in. */
export function requestOf(f: Record<string, string>): Record<string, unknown> {
  const pick = (o: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== ''));
  const source = pick({ spiffe_id: f.source, user: f.user, ip: f.ip, mfa: f.mfa === 'on' ? true : undefined });
  const target = pick({ spiffe_id: f.target, service: f.service, host: f.host });
  const request = pick({ method: f.method, path: f.path });
  return pick({
    source: Object.keys(source).length ? source : undefined,
    target: Object.keys(target).length ? target : undefined,
    request: Object.keys(request).length ? request : undefined,
  });
}
