// Minifies widget.js into dist/widget.min.js, stamped on its first line with the source's
// FNV-1a 64 hash (crates/frontdesk-api/src/assets.rs checks the stamp, so a stale dist
// fails the tests). `--check` only reports whether dist is current and its sizes.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const source = readFileSync(join(here, 'widget.js'));
const out = join(here, 'dist', 'widget.min.js');

function fnv1a64(bytes) {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}
const stamp = `/*! Frontdesk chat widget | src:${fnv1a64(source)} */`;

if (process.argv.includes('--check')) {
  const current = readFileSync(out, 'utf8');
  const ok = current.split('\n', 1)[0] === stamp;
  console.log(`${ok ? 'current' : 'STALE'}: ${current.length} bytes, ${gzipSync(current).length} gzipped`);
  process.exit(ok ? 0 : 1);
}

const { transform } = await import('esbuild');
const { code } = await transform(source.toString('utf8'), { minify: true, target: 'es2020', legalComments: 'none' });
mkdirSync(join(here, 'dist'), { recursive: true });
const text = `${stamp}\n${code}`;
writeFileSync(out, text);
console.log(`dist/widget.min.js: ${text.length} bytes, ${gzipSync(text).length} gzipped`);
