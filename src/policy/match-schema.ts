/**
 * The `from`/`to` field schemas shared by the native and the Istio formats. The formats differ in
 * whether a list may be empty (Istio is proto3: an empty list is an absent one), so the element list
 * schemas are parameters.
 */
import { z } from 'zod';

type List = z.ZodType<string[]>;
type PortList = z.ZodType<(string | number)[]>;

/** Istio's source fields (`principals`, `namespaces`, IP blocks… and their `not*` forms). */
export function istioSourceShape(strs: List) {
  return {
    principals: strs.optional(),
    notPrincipals: strs.optional(),
    requestPrincipals: strs.optional(),
    notRequestPrincipals: strs.optional(),
    namespaces: strs.optional(),
    notNamespaces: strs.optional(),
    ipBlocks: strs.optional(),
    notIpBlocks: strs.optional(),
    remoteIpBlocks: strs.optional(),
    notRemoteIpBlocks: strs.optional(),
  };
}

/** The operation (`to`) fields, the same in both formats. */
export function operationSchema(strs: List, portList: PortList) {
  return z
    .object({
      hosts: strs.optional(),
      notHosts: strs.optional(),
      ports: portList.optional(),
      notPorts: portList.optional(),
      methods: strs.optional(),
      notMethods: strs.optional(),
      paths: strs.optional(),
      notPaths: strs.optional(),
    })
    .strict();
}
