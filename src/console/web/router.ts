/** The current hash route as a Preact hook (the routes themselves: routes.ts). */
import { useEffect, useState } from 'preact/hooks';
import { parseRoute, type Route } from './routes.js';

/** The current route, following `hashchange`. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
