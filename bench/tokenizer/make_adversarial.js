// Writes adversarial tokenizer cases with reference ids from the Rust
// `tokenizers` library (Node binding): short random strings built from atoms
// that stress the pre-tokenizer regex (white-space runs and newlines,
// contractions, the optional prefix character, digits, punctuation runs),
// NFC, added-token matching, and characters whose class or composition changed
// in recent Unicode versions. Deterministic (fixed seed).
//
//   node make_adversarial.js TOKENIZER_JSON COUNT > ../../tokenizer/testdata/adversarial.jsonl
'use strict';
const { Tokenizer } = require('@anush008/tokenizers');

const atoms = [
  // white space
  ' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n', '\r', '\r\n', '\n\n', '\u000b', '\u000c', '\u00a0', '\u3000',
  '\u0085', '\u2028', '\u2029', '\u1680', '\u202f', '\u2003', '\u200b', '\ufeff', '\u180e',
  // letters and contractions
  'a', 'b', 's', 'S', 't', 'T', 're', 'RE', 'Re', 've', 'VE', 'll', 'LL', 'd', 'D', 'm', 'M', 'x', 'word',
  'Hello', 'the', 'é', 'e\u0301', 'ſ', 'ß', 'İ', 'ı', '\u212a', '\u212b', '\u2126', 'ǅ', 'ﬁ', 'ﬆ',
  "'", "'", "''", '\u2019', '`', "'s", "'S", "'ll", "'ve", "'re", "'d", "'m", "'t", "n't",
  // numbers
  '0', '7', '42', '2024', '²', '½', '٣', '\u2160', '\u216b', '①', '\u3007', '𝟘',
  // punctuation and symbols
  '.', ',', '!', '?', '-', '...', '"', '(', ')', '/', ':', '#', '@', '_', '<', '>', '|', '$', '%', '&', '*',
  '+', '=', '~', '^', '\\', '[', ']', '{', '}', '©', '°', '€', '→', '★', '—', '·',
  // combining marks
  '\u0301', '\u0338', '\u0308', '\u0327', '\u20dd', '\u093c', '\u0e31',
  // CJK and other scripts
  '中', '文', '中文', '。', '，', '「', '」', '日本語', 'カタカナ', 'ー', '한국어', '\u1100\u1161\u11a8',
  'مرحبا', 'שלום', 'Ωmega', 'Привет', 'नमस्ते', '\u0915\u093c', '\u0958', 'สวัสดี', 'ᚠᚢ', 'ꓐ',
  // emoji
  '😀', '👍🏽', '👨\u200d👩\u200d👧', '🇯🇵', '1\ufe0f\u20e3', '\u200d', '\ufe0f', '❤️',
  // added tokens and their fragments
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '</tool_call>',
  '<|fim_prefix|>', '<|im_start', 'im_end|>', '<|', '|>', '<|im_start|im_end|>', '<<|im_end|>',
  // Unicode 13-16 additions: letters of new scripts, new canonical compositions
  '\u{10d4a}', '\u{16d43}', '\u{16d63}\u{16d67}', '\u{11382}\u{113c9}', '\u{16121}\u{1611e}',
  '\u{11935}\u{11930}', '\u{1e4d0}', '\u{11f04}', '\u{10ec2}', '\u{1ccf0}', '\u{1fbf0}',
];

// xorshift32, fixed seed: the file is reproducible.
let seed = 0x2545f491;
function rnd(n) {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % n;
}

async function main(tokFile, count) {
  const tok = Tokenizer.fromFile(tokFile);
  for (let i = 0; i < count; i++) {
    const k = 1 + rnd(10);
    let s = '';
    for (let j = 0; j < k; j++) s += atoms[rnd(atoms.length)];
    const ids = (await tok.encode(s)).getIds();
    process.stdout.write(JSON.stringify({ text: s, ids }) + '\n');
  }
}

const [tokFile, count] = process.argv.slice(2);
if (!tokFile || !count) {
  console.error('usage: make_adversarial.js TOKENIZER_JSON COUNT');
  process.exit(2);
}
main(tokFile, parseInt(count, 10)).catch((e) => { console.error(e); process.exit(1); });
