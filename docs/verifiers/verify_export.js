#!/usr/bin/env node
// Verify a tracehouse single-trace export with Node's standard library and a JCS library only.
//
//     npm install canonicalize@2.1.0
//     node verify_export.js export.json PUBLIC_KEY_BASE64
//
// Independent of tracehouse's code, it follows docs/verifying.md step by step: every link's seq,
// prev_hash and hash (sha256 of the link minus its "hash" as RFC 8785 JSON, hash_version 2), the
// checkpoint's Ed25519 signature over the RFC 8785 JSON of its statement, and the RFC 6962 audit path
// of the chain's head up to the signed root. Links of hash_version 1 (sealed before 2026-12-05, hashed
// as Python's sorted-keys JSON) are checked where that text equals JCS: no floats, no names outside
// the Basic Multilingual Plane. Exit status 0 when all of it holds, 1 otherwise.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const canonicalize = require('canonicalize');

const GENESIS = '0'.repeat(64);
const sha256 = (...parts) => crypto.createHash('sha256').update(Buffer.concat(parts)).digest();

function linkHash(link) {
  const version = link.hash_version === undefined ? 1 : link.hash_version;
  const document = Object.fromEntries(Object.entries(link).filter(([k]) =>
    k !== 'hash' && !(version === 1 && k === 'hash_version')));
  if (version !== 1 && version !== 2) throw new Error(`unknown hash_version ${version}`);
  // version 1: Python's sorted-keys JSON, the same text as JCS for the links it can check here
  return sha256(Buffer.from(canonicalize(document), 'utf8')).toString('hex');
}

function checkChain(chain) {
  let prev = GENESIS;
  for (let i = 0; i < chain.length; i++) {
    const link = chain[i];
    if (link.seq !== i + 1) return [`${link.event_id}: seq ${link.seq} where ${i + 1} was expected`];
    if (link.prev_hash !== prev) return [`${link.event_id}: prev_hash is not the previous link's hash`];
    if (linkHash(link) !== link.hash) return [`${link.event_id}: hash does not match the event's content`];
    prev = link.hash;
  }
  return [];
}

function included(leaf, index, size, path, root) {
  if (!(index >= 0 && index < size)) return false;
  let fn = index;
  let sn = size - 1;
  let r = sha256(Buffer.from([0]), leaf);
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = sha256(Buffer.from([1]), p, r);
      while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = sha256(Buffer.from([1]), r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

// An Ed25519 public key's 32 raw bytes as a SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const STATEMENT = ['version', 'number', 'period_start', 'period_end', 'tree_size', 'root', 'previous'];

function checkAnchor(exported, rawKey) {
  const chain = exported.integrity.chain;
  const proof = exported.integrity.proof;
  if (proof === null) return ['no checkpoint covers this trace yet'];
  const { checkpoint, leaf } = proof;
  const problems = [];
  const statement = Buffer.from(canonicalize(Object.fromEntries(STATEMENT.map((k) => [k, checkpoint[k]]))), 'utf8');
  const key = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, rawKey]), format: 'der', type: 'spki' });
  if (!crypto.verify(null, statement, key, Buffer.from(checkpoint.signature, 'base64'))) {
    problems.push(`checkpoint ${checkpoint.number} is not signed by this key`);
  }
  if (leaf.kind !== 'trace' || leaf.org_id !== chain[0].org_id || leaf.chain !== exported.trace.id) {
    problems.push('the proof is for another chain');
  }
  if (!(leaf.seq >= 1 && leaf.seq <= chain.length) || chain[leaf.seq - 1].hash !== leaf.hash) {
    problems.push(`the chain's link ${leaf.seq} is not the checkpointed head`);
  }
  const rawLeaf = Buffer.from(canonicalize({ kind: leaf.kind, org_id: leaf.org_id, chain: leaf.chain,
                                             seq: leaf.seq, hash: leaf.hash }), 'utf8');
  if (!included(rawLeaf, proof.leaf_index, checkpoint.tree_size, proof.path.map((h) => Buffer.from(h, 'hex')),
                Buffer.from(checkpoint.root, 'hex'))) {
    problems.push("the head is not included in the checkpoint's root");
  }
  return problems;
}

function main(file, publicKeyBase64) {
  const exported = JSON.parse(fs.readFileSync(file, 'utf8'));
  const chain = exported.integrity.chain;
  let problems = chain.length ? checkChain(chain) : ['the export holds no events'];
  if (chain.length) problems = problems.concat(checkAnchor(exported, Buffer.from(publicKeyBase64, 'base64')));
  for (const problem of problems) console.log(`FAILED: ${problem}`);
  console.log(problems.length ? 'export NOT verified' : `export verified: ${chain.length} links`);
  return problems.length ? 1 : 0;
}

process.exitCode = main(process.argv[2], process.argv[3]);
