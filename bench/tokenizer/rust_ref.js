// Reference side of the tokenizer comparison: the Hugging Face Rust
// `tokenizers` library through its Node binding (@anush008/tokenizers, the
// engine that produced the golden ids).
//
//   node rust_ref.js bench TOKENIZER_JSON CORPUS_JSONL N
//       encodes every row's "text" of the corpus N times, one call at a time
//       (UV_THREADPOOL_SIZE=1 keeps the binding single-threaded), and prints the
//       load time and tokens/s.
//   node rust_ref.js ids TOKENIZER_JSON < LINES
//       reads one JSON string per line and prints its ids as a JSON array.
//   node rust_ref.js decode TOKENIZER_JSON < LINES
//       reads one JSON string per line and prints decode(encode(s)) as a JSON
//       string: the text as the reference normalizes it.
'use strict';
const fs = require('fs');
const readline = require('readline');
const { Tokenizer } = require('@anush008/tokenizers');

async function bench(tokFile, corpusFile, n) {
  const texts = fs.readFileSync(corpusFile, 'utf8').split('\n')
    .filter((l) => l.trim() !== '').map((l) => JSON.parse(l).text);
  let t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(tokFile);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  // One warm-up pass (fills the BPE cache, as Go's "warm" variant does).
  let perPass = 0;
  for (const t of texts) perPass += (await tok.encode(t)).getIds().length;
  t0 = process.hrtime.bigint();
  let tokens = 0;
  for (let i = 0; i < n; i++) {
    for (const t of texts) tokens += (await tok.encode(t)).getIds().length;
  }
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({
    impl: 'rust-tokenizers (node binding)', load_ms: +loadMs.toFixed(1), rows: texts.length,
    tokens_per_pass: perPass, passes: n, seconds: +sec.toFixed(3), tokens_per_s: Math.round(tokens / sec),
  }));
}

async function ids(tokFile, decode) {
  const tok = Tokenizer.fromFile(tokFile);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line === '') continue;
    const enc = await tok.encode(JSON.parse(line));
    const out = decode ? await tok.decode(enc.getIds(), false) : enc.getIds();
    process.stdout.write(JSON.stringify(out) + '\n');
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'bench' && args.length === 3) {
  bench(args[0], args[1], parseInt(args[2], 10)).catch((e) => { console.error(e); process.exit(1); });
} else if ((mode === 'ids' || mode === 'decode') && args.length === 1) {
  ids(args[0], mode === 'decode').catch((e) => { console.error(e); process.exit(1); });
} else {
  console.error('usage: rust_ref.js bench TOKENIZER_JSON CORPUS_JSONL N | rust_ref.js ids|decode TOKENIZER_JSON < LINES');
  process.exit(2);
}
