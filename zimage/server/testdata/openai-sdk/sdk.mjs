// Calls zimage serve with the official OpenAI Node SDK, as a user would,
// for zimage/server's TestOpenAINodeSDK. Prints one JSON line.
//
//   node sdk.mjs images BASE_URL API_KEY PROMPT TIMEOUT_MS [MAX_RETRIES]
//     → {"ok":true,"images":N,"b64":LEN} or {"ok":false,"error":CLASS,"status":S,"message":M}
//   node sdk.mjs models BASE_URL API_KEY
//     → {"ok":true,"ids":[…],"retrieved":ID}
//   node sdk.mjs edit BASE_URL API_KEY PROMPT IMAGE_PNG [MASK_PNG]
//     → {"ok":true,"images":N,"b64":LEN} (images.edit, multipart upload)
import fs from "node:fs";
import OpenAI, { toFile } from "openai";

const [cmd, baseURL, apiKey, ...rest] = process.argv.slice(2);
try {
  if (cmd === "images") {
    const [prompt, timeoutMs, maxRetries] = rest;
    const client = new OpenAI({
      baseURL,
      apiKey,
      timeout: Number(timeoutMs),
      ...(maxRetries !== undefined ? { maxRetries: Number(maxRetries) } : {}), // default: the SDK's own (2)
    });
    const res = await client.images.generate({ model: "z-image-turbo", prompt, size: "64x64", response_format: "b64_json" });
    console.log(JSON.stringify({ ok: true, images: res.data.length, b64: res.data[0].b64_json.length }));
  } else if (cmd === "models") {
    const client = new OpenAI({ baseURL, apiKey });
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    const one = await client.models.retrieve(ids[0]);
    console.log(JSON.stringify({ ok: true, ids, retrieved: one.id, object: one.object, owned_by: one.owned_by }));
  } else if (cmd === "edit") {
    const [prompt, imagePath, maskPath] = rest;
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const png = async (p) => toFile(fs.readFileSync(p), p.split("/").pop(), { type: "image/png" });
    const res = await client.images.edit({
      model: "z-image-turbo", prompt, image: await png(imagePath),
      ...(maskPath ? { mask: await png(maskPath) } : {}), n: 1, response_format: "b64_json",
    });
    console.log(JSON.stringify({ ok: true, images: res.data.length, b64: res.data[0].b64_json.length }));
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: e.constructor.name, status: e.status ?? 0, message: String(e.message) }));
}
