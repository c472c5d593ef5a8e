/**
 * Limits of the replicated lock table (lock-table.ts) and of the relay's lock manager
 * (relay-nlm.ts). The table limits are part of the replicated state's rules: every replica must
 * use the same values, so changing one is a format change. docs/operations.md lists them.
 */

/** Held lock ranges (after merging) in the whole table; a LOCK beyond it is DENIED_NOLOCKS. */
export const MAX_LOCKS = 1024;
/** Blocked LOCK requests waiting (or granted and not yet told to their client). */
export const MAX_WAITERS = 256;
/** DOS share reservations (NLM SHARE). */
export const MAX_SHARES = 256;
/** Relays with a lease on the table (one per relay that ever locked). */
export const MAX_LEASES = 64;
/**
 * Longest caller name (NLM's LM_MAXSTRLEN is 1024; Linux sends its node name, at most 64
 * bytes). Longer names are a malformed call.
 */
export const MAX_CALLER_NAME_BYTES = 255;
/** Longest owner handle, `oh` (XNFS MAXNETOBJ_SZ is 1024; Linux sends "svid@node", < 80). */
export const MAX_OWNER_HANDLE_BYTES = 256;
/** Longest file handle (NFSv3's NFS3_FHSIZE). */
export const MAX_LOCK_FH_BYTES = 64;
/** Longest cookie of a blocked LOCK, given back in the GRANTED callback. */
export const MAX_COOKIE_BYTES = 64;
/** Longest client address the table keeps for the GRANTED callback (an IPv6 text form). */
export const MAX_HOST_BYTES = 64;
/**
 * Bytes of the replicated state that hold the lock table (its encoding, lock-store.ts). A unit
 * test fills every limit above with the longest names and checks the encoding fits.
 */
export const LOCK_REGION_BYTES = 2 * 2 ** 20;

/**
 * A relay's lease on its clients' locks: when no lock operation or renewal of the relay was
 * executed for this long (agreed time), the first lock operation after that releases all its
 * locks, waiters and shares, so a dead relay or client machine cannot hold a lock forever.
 */
export const LEASE_PERIOD_S = 90;
/** Bounds of a cluster's own lease period (cluster.json `leaseSeconds`). */
export const MIN_LEASE_S = 3;
export const MAX_LEASE_S = 86_400;
/** How often a relay that holds anything renews its lease (a third of the period). */
export const LEASE_RENEW_MS = (LEASE_PERIOD_S * 1000) / 3;
/**
 * How often a relay with blocked requests asks the service which were granted: the bound on
 * the delay between an UNLOCK and the GRANTED callback to the waiting client.
 */
export const GRANT_POLL_MS = 250;
/** GRANTED callbacks a client may fail to answer before the relay gives its grant back. */
export const MAX_GRANT_ATTEMPTS = 20;
/** How long one callback (portmapper query or NLM call to a client) may take. */
export const CALLBACK_TIMEOUT_MS = 2000;
/** _MSG calls whose _RES callback is still being sent; more are answered by dropping the _RES. */
export const MAX_PENDING_CALLBACKS = 256;
