// A session of the unmodified JS client `@nftstorage/ipfs-cluster` against a REST API:
// version, peers, add (its defaults: CIDv1, raw leaves, stream-channels=false), status,
// pin with a name, allocation, unpin. Run by tests/gateway_api.rs; prints one JSON
// summary line on success, exits 1 with the failing step otherwise.
//
//   node js_session.mjs <rest url> <expected peer count>
import { Cluster } from '@nftstorage/ipfs-cluster'

const [url, peersWanted] = process.argv.slice(2)
if (!url || !peersWanted) {
  console.error('usage: node js_session.mjs <rest url> <expected peer count>')
  process.exit(2)
}
const cluster = new Cluster(url)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`)
}

async function waitStatus (cid, want) {
  for (let i = 0; i < 300; i++) {
    const s = await cluster.status(cid)
    const all = Object.values(s.peerMap)
    if (all.length > 0 && all.every((p) => p.status === want)) return s
    await sleep(100)
  }
  throw new Error(`${cid} never became ${want} on every peer`)
}

async function main () {
  const version = await cluster.version()
  check(version === '1.1.6', `version is 1.1.6, got ${version}`)
  const info = await cluster.info()
  check(typeof info.id === 'string' && info.id.length > 0, 'info has an id')
  const peers = await cluster.peerList()
  check(peers.length === Number(peersWanted), `peerList has ${peersWanted} peers, got ${peers.length}`)
  check(peers.every((p) => !p.error), 'no peer error in peerList')

  const content = `added by the JS client ${Date.now()}\n`
  const file = new Blob([content])
  const added = await cluster.add(file, { name: 'js-added' })
  check(typeof added.cid === 'string' && added.cid.startsWith('bafk'), `add gave a CIDv1 raw leaf, got ${added.cid}`)
  await waitStatus(added.cid, 'pinned')

  const pinned = await cluster.pin(added.cid, { name: 'js-pin', replicationFactorMin: -1, replicationFactorMax: -1 })
  check(pinned.cid === added.cid, 'pin answers the CID')
  check(pinned.name === 'js-pin', `pin answers the name, got ${pinned.name}`)
  const alloc = await cluster.allocation(added.cid)
  check(alloc.name === 'js-pin', 'allocation shows the new name')
  await waitStatus(added.cid, 'pinned')

  const all = await cluster.statusAll({ cids: [added.cid] })
  check(all.length === 1 && all[0].cid === added.cid, 'statusAll with cids lists the CID')

  const unpinned = await cluster.unpin(added.cid)
  check(unpinned.cid === added.cid, 'unpin answers the CID')
  await waitStatus(added.cid, 'unpinned')

  let missing = null
  try {
    await cluster.allocation(added.cid)
  } catch (e) {
    missing = e.response?.status
  }
  check(missing === 404, `allocation after unpin is 404, got ${missing}`)

  console.log(JSON.stringify({ ok: true, version, peers: peers.length, cid: added.cid, size: added.size, content }))
}

main().catch((e) => {
  console.error(`js session failed: ${e.stack || e}`)
  process.exit(1)
})
