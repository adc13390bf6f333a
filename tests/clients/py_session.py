"""A session of the unmodified Python client `ipfscluster` (PyPI 0.2.0, with
ipfshttpclient 0.4.12, the last release whose `HTTPClient._request` takes the parser
argument ipfscluster passes; 0.4.13 moved it and 0.5+ removed `HTTPClient`)
against a REST API: version, id, peers, add_bytes, pin, status, unpin. Run by
tests/gateway_api.rs; prints one JSON summary line on success, exits 1 otherwise.

    python3 py_session.py <rest port> <expected peer count>
"""
import json
import sys
import time

import ipfscluster


def check(cond, what):
    if not cond:
        raise SystemExit("py session failed: check failed: %s" % what)


def wait_status(client, cid, want):
    for _ in range(300):
        s = client.pins.ls(cid)
        peers = list(s["peer_map"].values())
        if peers and all(p["status"] == want for p in peers):
            return s
        time.sleep(0.1)
    raise SystemExit("py session failed: %s never became %s on every peer" % (cid, want))


def main():
    port, peers_wanted = sys.argv[1], int(sys.argv[2])
    client = ipfscluster.connect("/ip4/127.0.0.1/tcp/%s/http" % port)
    version = client.version()["version"]
    check(version == "1.1.6", "version is 1.1.6, got %r" % version)
    me = client.id()
    check(me["id"], "id has a peer id")
    # peers.ls() returns only the first streamed ID (the client indexes [0]).
    first = client.peers.ls()
    check(isinstance(first, dict) and first["id"] in me["cluster_peers"], "peers.ls: %r" % (first,))
    check(len(me["cluster_peers"]) == peers_wanted, "id lists %d cluster peers" % peers_wanted)

    data = ("added by the Python client %f\n" % time.time()).encode()
    added = client.add_bytes(data, name="py-added")
    cid = added["cid"]
    check(isinstance(cid, str) and cid.startswith("Qm"), "add gave a CIDv0, got %r" % (cid,))
    check(added["name"] == "py-added", "add output names the file, got %r" % added["name"])
    wait_status(client, cid, "pinned")

    pin = client.pins.add(cid, opts={"name": "py-pin"})
    if isinstance(pin, list):
        pin = pin[0]
    check(pin["cid"] == cid and pin["name"] == "py-pin", "pin answers the CID and name: %r" % pin)
    wait_status(client, cid, "pinned")

    unpinned = client.pins.rm(cid)
    if isinstance(unpinned, list):
        unpinned = unpinned[0]
    check(unpinned["cid"] == cid, "unpin answers the CID")
    wait_status(client, cid, "unpinned")

    print(json.dumps({"ok": True, "version": version, "peers": len(me["cluster_peers"]), "cid": cid}))


if __name__ == "__main__":
    main()
