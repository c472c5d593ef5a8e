import { strict as assert } from 'node:assert';
import { MountStatus, NfsStatus } from 'nfs-server-ts';
import {
  DEFAULT_EXPORTS,
  ExportRules,
  ExportsError,
  checkExports,
  formatExportEntry,
  parseExportsLine,
} from '../src/exports';

const SYS = (uid: number, gid = uid) => ({ stamp: 0, machineName: 'c', uid, gid, gids: [gid] });

describe('exports: the rules of /etc/exports, per entry', () => {
  it('a cluster.json without exports gets the default: everyone, read-write, root squashed', () => {
    assert.deepEqual(checkExports(undefined), DEFAULT_EXPORTS);
    assert.equal(formatExportEntry(DEFAULT_EXPORTS[0]), '/ *(rw,root_squash)');
  });

  it('an entry that leaves options out gets /etc/exports defaults: ro, root_squash, anonuid 65534', () => {
    const [e] = checkExports([{ path: '/pub//docs/' }]);
    assert.deepEqual(e, {
      path: '/pub/docs',
      clients: ['*'],
      access: 'ro',
      squash: 'root_squash',
      anonuid: 65534,
      anongid: 65534,
    });
  });

  it('refuses what it cannot enforce, with the entry and field in the message', () => {
    const bad: [unknown, RegExp][] = [
      [[{ path: 'relative' }], /exports\[0\]: export path must be absolute/],
      [[{ path: '/a/../b' }], /bad export path/],
      [[{ path: '/', clients: ['*.example.com'] }], /host names and wildcards are not supported/],
      [[{ path: '/', clients: ['10.0.0.0/33'] }], /bad prefix length/],
      [[{ path: '/', access: 'write' }], /access must be "rw" or "ro"/],
      [[{ path: '/', squash: 'squash_all' }], /squash must be one of/],
      [[{ path: '/', anonuid: -1 }], /anonuid must be an integer/],
      [[{ path: '/', sync: true }], /unknown field "sync"/],
      [[], /non-empty list/],
    ];
    for (const [raw, re] of bad) assert.throws(() => checkExports(raw), re);
    assert.throws(() => checkExports([{ path: '/', clients: [] }]), ExportsError);
  });

  it('reads /etc/exports lines: one entry per client, options alone apply to everyone', () => {
    const entries = parseExportsLine(
      '/srv 10.0.0.0/8(rw,no_root_squash) 192.168.1.7(ro,all_squash,anonuid=1000,anongid=100)',
    );
    assert.equal(entries.length, 2);
    assert.deepEqual(
      entries.map((e) => [e.clients[0], e.access, e.squash, e.anonuid, e.anongid]),
      [
        ['10.0.0.0/8', 'rw', 'no_root_squash', 65534, 65534],
        ['192.168.1.7', 'ro', 'all_squash', 1000, 100],
      ],
    );
    assert.deepEqual(parseExportsLine('/pub (ro)')[0].clients, ['*']);
    assert.deepEqual(parseExportsLine('/pub')[0].access, 'ro');
    for (const e of entries) assert.deepEqual(parseExportsLine(formatExportEntry(e)), [e]);
    assert.equal(parseExportsLine('/srv *(rw,sync,no_subtree_check)')[0].access, 'rw');
    assert.throws(() => parseExportsLine('/srv *(rw,async)'), /unknown export option "async"/);
    assert.throws(() => parseExportsLine('/srv *(secure)'), /unknown export option "secure"/);
  });

  it('admits clients by address, CIDR block (IPv4 and IPv6) or *, and IPv4-mapped IPv6 as IPv4', () => {
    const rules = new ExportRules(
      checkExports([
        { path: '/a', clients: ['10.1.0.0/16', '127.0.0.2'] },
        { path: '/b', clients: ['fd00::/8'] },
        { path: '/c', clients: ['*'] },
      ]),
    );
    assert.ok(rules.admits(0, '10.1.200.3'));
    assert.ok(rules.admits(0, '::ffff:127.0.0.2'));
    assert.ok(!rules.admits(0, '10.2.0.1'));
    assert.ok(rules.admits(1, 'fd12::1'));
    assert.ok(!rules.admits(1, '10.1.0.1'));
    assert.ok(rules.admits(2, 'anything'));
    assert.ok(!rules.admits(3, '10.1.0.1'), 'no such export');
  });

  it('MNT picks the deepest export at or above the path that admits the client; NOENT when none covers it, ACCES when none admits it', () => {
    const rules = new ExportRules(
      checkExports([
        { path: '/', clients: ['127.0.0.1'], access: 'rw' },
        { path: '/pub', clients: ['*'], access: 'ro' },
        { path: '/home', clients: ['127.0.0.1'], access: 'rw' },
      ]),
    );
    assert.deepEqual(rules.forMount('/pub/docs', '127.0.0.1'), { index: 1 });
    assert.deepEqual(rules.forMount('/home/ann', '127.0.0.1'), { index: 2 });
    assert.deepEqual(rules.forMount('/homeless', '127.0.0.1'), { index: 0 });
    assert.deepEqual(rules.forMount('/pub', '127.0.0.9'), { index: 1 });
    assert.deepEqual(rules.forMount('/home', '127.0.0.9'), { status: MountStatus.ACCES });
    const only = new ExportRules(checkExports([{ path: '/pub' }]));
    assert.deepEqual(only.forMount('/etc', '127.0.0.1'), { status: MountStatus.NOENT });
    assert.deepEqual(only.forMount('relative', '127.0.0.1'), { status: MountStatus.NOENT });
  });

  it("a call's handle names its export: ACCES for a client that export does not admit, STALE for an export that does not exist", () => {
    const rules = new ExportRules(
      checkExports([{ path: '/', clients: ['127.0.0.1'] }, { path: '/pub' }]),
    );
    const handle = (index: number) => {
      const fh = new Uint8Array(26);
      fh[16] = index >> 8;
      fh[17] = index & 0xff;
      return fh;
    };
    assert.deepEqual(rules.forHandle(handle(0), '127.0.0.1'), { index: 0 });
    assert.deepEqual(rules.forHandle(handle(0), '127.0.0.2'), { status: NfsStatus.ACCES });
    assert.deepEqual(rules.forHandle(handle(1), '127.0.0.2'), { index: 1 });
    assert.deepEqual(rules.forHandle(handle(2), '127.0.0.1'), { status: NfsStatus.STALE });
    assert.deepEqual(rules.forHandle(new Uint8Array(8), '127.0.0.1'), {
      status: NfsStatus.BADHANDLE,
    });
  });

  it('squashes as asked: root_squash maps uid 0 only, all_squash everyone, no_root_squash no one; AUTH_NONE is anonymous', () => {
    const rules = new ExportRules(
      checkExports([
        { path: '/', squash: 'root_squash' },
        { path: '/', squash: 'all_squash', anonuid: 1500, anongid: 1600 },
        { path: '/', squash: 'no_root_squash' },
      ]),
    );
    const anon = { uid: 65534, gid: 65534, gids: [] };
    assert.deepEqual(rules.credentials(0, SYS(0)), anon);
    assert.deepEqual(rules.credentials(0, SYS(1000)), { uid: 1000, gid: 1000, gids: [1000] });
    assert.deepEqual(rules.credentials(1, SYS(1000)), { uid: 1500, gid: 1600, gids: [] });
    assert.deepEqual(rules.credentials(2, SYS(0)), { uid: 0, gid: 0, gids: [0] });
    assert.deepEqual(rules.credentials(2, undefined), anon);
  });

  it("MOUNT's EXPORT lists each path once with the client groups of all its entries", () => {
    const rules = new ExportRules(
      checkExports([
        { path: '/srv', clients: ['10.0.0.0/8'], access: 'rw' },
        { path: '/srv', clients: ['*'] },
        { path: '/pub', clients: ['127.0.0.1', '127.0.0.2'] },
      ]),
    );
    assert.deepEqual(rules.listing(), [
      { dir: '/srv', groups: ['10.0.0.0/8', '*'] },
      { dir: '/pub', groups: ['127.0.0.1', '127.0.0.2'] },
    ]);
  });
});
