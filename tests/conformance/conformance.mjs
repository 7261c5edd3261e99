// Drives a running `spa serve` with the official OpenAI SDK and LangChain's OpenAI integration, as their users would,
// and checks every parsed answer against the in-process engine's generations that the caller computed.
//
// Environment: SPA_BASE_URL (http://HOST:PORT/v1), SPA_API_KEY, SPA_DEVICE (a simulated device on a slow link, for
// the error mid-stream), SPA_EXPECTED (JSON, see `expected` below). The server must admit two generations at once and
// queue none (Spa__Serving__MaxConcurrentGenerations=2, Spa__Serving__MaxQueuedGenerations=0), for the 429.
// Prints "ok NAME" or "FAIL NAME: reason" per check, then a JSON summary line; exits 1 when a check failed.
import OpenAI from "openai";
import { ChatOpenAI, OpenAI as LangChainOpenAI } from "@langchain/openai";

const baseURL = process.env.SPA_BASE_URL;
const apiKey = process.env.SPA_API_KEY;
const device = process.env.SPA_DEVICE;
/** @type {{model: string, prompt: string, text: string, promptTokens: number, completionTokens: number, maxTokens: number,
 *   other: string, otherText: string, stop: string, stopText: string, chatSystem: string, chatUser: string, chatText: string,
 *   promptIds: number[], penalisedTokens: number, penalisedText: string, biasToken: number, biasedText: string}} */
const expected = JSON.parse(process.env.SPA_EXPECTED ?? "null");
if (!baseURL || !apiKey || !device || !expected) {
  console.error("conformance: set SPA_BASE_URL, SPA_API_KEY, SPA_DEVICE and SPA_EXPECTED");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const results = [];

async function check(name, body) {
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`ok ${name}`);
  } catch (e) {
    results.push({ name, ok: false, reason: String(e?.stack ?? e) });
    console.log(`FAIL ${name}: ${String(e?.message ?? e).replaceAll("\n", " ")}`);
  }
}

function equal(actual, wanted, what) {
  const a = JSON.stringify(actual), w = JSON.stringify(wanted);
  if (a !== w) throw new Error(`${what}: expected ${w}, got ${a}`);
}

function truthy(value, what) {
  if (!value) throw new Error(what);
}

async function rejects(call, type, what) {
  try {
    await call();
  } catch (e) {
    if (e instanceof type) return e;
    throw new Error(`${what}: expected ${type.name}, got ${e?.constructor?.name}: ${e?.message}`);
  }
  throw new Error(`${what}: expected ${type.name}, but the call succeeded`);
}

const greedy = { model: expected.model, max_tokens: expected.maxTokens, temperature: 0 };

await check("models.list and models.retrieve", async () => {
  const models = [];
  for await (const model of client.models.list()) models.push(model.id);
  equal(models, [expected.model], "listed models");
  const model = await client.models.retrieve(expected.model);
  equal([model.id, model.object], [expected.model, "model"], "retrieved model");
  const missing = await rejects(() => client.models.retrieve("no-such-model"), OpenAI.NotFoundError, "an unknown model");
  equal(missing.code, "model_not_found", "error code");
});

await check("completions.create", async () => {
  const completion = await client.completions.create({ ...greedy, prompt: expected.prompt });
  equal(completion.choices[0].text, expected.text, "text");
  equal(completion.choices[0].finish_reason, "length", "finish_reason");
  equal([completion.usage.prompt_tokens, completion.usage.completion_tokens], [expected.promptTokens, expected.completionTokens], "usage");
});

await check("completions streamed without usage", async () => {
  const stream = await client.completions.create({ ...greedy, prompt: expected.prompt, stream: true });
  let text = "", ids = new Set(), usage = 0;
  for await (const chunk of stream) {
    ids.add(`${chunk.id}/${chunk.created}`);
    text += chunk.choices[0]?.text ?? "";
    if (chunk.usage) usage++;
  }
  equal(text, expected.text, "streamed text");
  equal([ids.size, usage], [1, 0], "one id and created, no usage");
});

await check("completions streamed with include_usage", async () => {
  const stream = await client.completions.create({ ...greedy, prompt: expected.prompt, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks.at(-1);
  equal([last.choices.length, last.usage.completion_tokens], [0, expected.completionTokens], "the usage chunk");
  equal(chunks.slice(0, -1).filter((c) => c.usage).length, 0, "usage before the last chunk");
  equal(chunks.slice(0, -1).map((c) => c.choices[0].text).join(""), expected.text, "streamed text");
});

await check("prompt arrays and token prompts", async () => {
  const both = await client.completions.create({ ...greedy, prompt: [expected.prompt, expected.other] });
  equal(both.choices.map((c) => [c.index, c.text]), [[0, expected.text], [1, expected.otherText]], "choices");
  const ids = await client.completions.create({ ...greedy, prompt: expected.promptIds });
  equal(ids.choices[0].text, expected.text, "the text of a token prompt");
});

await check("echo and stop", async () => {
  const echoed = await client.completions.create({ ...greedy, prompt: expected.prompt, echo: true });
  equal(echoed.choices[0].text, expected.prompt + expected.text, "echoed text");
  const stopped = await client.completions.create({ ...greedy, prompt: expected.prompt, stop: [expected.stop] });
  equal([stopped.choices[0].text, stopped.choices[0].finish_reason], [expected.stopText, "stop"], "stopped completion");
});

await check("logprobs, penalties and logit_bias", async () => {
  const scored = await client.completions.create({ ...greedy, prompt: expected.prompt, logprobs: 2 });
  const logprobs = scored.choices[0].logprobs;
  equal([logprobs.tokens.length, logprobs.token_logprobs.length, Object.keys(logprobs.top_logprobs[0]).length], [expected.completionTokens, expected.completionTokens, 2], "completion logprobs");
  const chat = await client.chat.completions.create({
    model: expected.model, temperature: 0, max_tokens: expected.maxTokens, logprobs: true, top_logprobs: 2, messages: [{ role: "user", content: expected.prompt }],
  });
  equal(chat.choices[0].logprobs.content.map((c) => c.logprob), logprobs.token_logprobs, "chat logprobs of the same tokens");
  const penalised = await client.completions.create({ ...greedy, prompt: expected.prompt, max_tokens: expected.penalisedTokens, presence_penalty: 0.7, frequency_penalty: 1.2 });
  equal(penalised.choices[0].text, expected.penalisedText, "penalised text");
  const biased = await client.completions.create({ ...greedy, prompt: expected.prompt, max_tokens: 4, logit_bias: { [expected.biasToken]: 100 } });
  equal(biased.choices[0].text, expected.biasedText, "biased text");
});

await check("settings not served are refused by name", async () => {
  for (const [field, value] of [["best_of", 3], ["suffix", " The end."]]) {
    const error = await rejects(() => client.completions.create({ ...greedy, prompt: expected.prompt, [field]: value }), OpenAI.BadRequestError, field);
    equal(error.param, field, "the refused field");
  }
  const tools = await rejects(() => client.chat.completions.create({
    model: expected.model, messages: [{ role: "user", content: "Hi" }], tools: [{ type: "function", function: { name: "f", parameters: {} } }],
  }), OpenAI.BadRequestError, "tools");
  equal(tools.param, "tools", "the refused field");
});

await check("chat.completions.create", async () => {
  const chat = await client.chat.completions.create({
    model: expected.model, temperature: 0, max_completion_tokens: expected.maxTokens,
    messages: [{ role: "system", content: expected.chatSystem }, { role: "user", content: expected.chatUser }],
  });
  equal([chat.object, chat.choices[0].message.role, chat.choices[0].message.content], ["chat.completion", "assistant", expected.chatText], "chat answer");
});

await check("chat streamed", async () => {
  const stream = await client.chat.completions.create({
    model: expected.model, temperature: 0, max_tokens: expected.maxTokens, stream: true, stream_options: { include_usage: true },
    messages: [{ role: "system", content: expected.chatSystem }, { role: "user", content: expected.chatUser }],
  });
  let text = "", role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    role ??= choice.delta.role ?? null;
    text += choice.delta.content ?? "";
    finish ??= choice.finish_reason;
  }
  equal([role, text, finish], ["assistant", expected.chatText, "length"], "streamed chat");
  truthy(usage?.completion_tokens > 0, "no usage chunk");
});

await check("seed reproducibility and seedless variety", async () => {
  const sampled = { model: expected.model, prompt: expected.prompt, max_tokens: 24, temperature: 1 };
  const a = await client.completions.create({ ...sampled, seed: 7 });
  const b = await client.completions.create({ ...sampled, seed: 7 });
  equal(a.choices[0].text, b.choices[0].text, "the same seed");
  const texts = new Set();
  for (let i = 0; i < 4; i++) texts.add((await client.completions.create(sampled)).choices[0].text);
  truthy(texts.size >= 2, `four seedless completions gave ${texts.size} distinct texts`);
});

await check("error classes", async () => {
  const stranger = new OpenAI({ baseURL, apiKey: "not-a-key", maxRetries: 0 });
  await rejects(() => stranger.completions.create({ ...greedy, prompt: expected.prompt }), OpenAI.AuthenticationError, "a wrong key");
  const bad = await rejects(() => client.completions.create({ ...greedy, prompt: expected.prompt, max_tokens: 0 }), OpenAI.BadRequestError, "max_tokens 0");
  equal(bad.param, "max_tokens", "param");
  await rejects(() => client.completions.create({ ...greedy, model: "no-such-model", prompt: expected.prompt }), OpenAI.NotFoundError, "an unknown model");
  // Two long generations take both places; a third is refused at once.
  const abort = new AbortController();
  const long = { model: expected.model, prompt: expected.prompt, max_tokens: 400, stream: true, spa: { mode: "parallel", device_id: device } };
  const running = [0, 1].map(async () => {
    const stream = await client.completions.create(long, { signal: abort.signal });
    try {
      for await (const _ of stream) { /* until aborted */ }
    } catch { /* aborted */ }
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const refused = await rejects(() => client.completions.create({ ...greedy, prompt: expected.prompt }), OpenAI.RateLimitError, "a third generation");
  equal(refused.code, "over_capacity", "the 429's code");
  abort.abort();
  await Promise.allSettled(running);
  await placesFreed();
});

/** Waits (at most 10 s) until the server admits a generation again: aborted streams free their places as the server sees them go. */
async function placesFreed() {
  for (let attempt = 0; ; attempt++) {
    try {
      await client.completions.create({ ...greedy, prompt: expected.prompt, max_tokens: 1 });
      return;
    } catch (e) {
      if (!(e instanceof OpenAI.RateLimitError) || attempt === 40) throw e;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

await check("an error mid-stream reaches the SDK as an error", async () => {
  const stream = await client.completions.create({
    model: expected.model, prompt: expected.prompt, max_tokens: 400, stream: true, spa: { mode: "parallel", device_id: device },
  });
  let chunks = 0;
  const error = await rejects(async () => {
    for await (const chunk of stream) {
      if (++chunks === 1) {
        const deleted = await fetch(`${baseURL}/sessions/${chunk.id}`, { method: "DELETE", headers: { Authorization: `Bearer ${apiKey}` } });
        equal(deleted.status, 200, "deleting the session");
      }
    }
  }, OpenAI.APIError, "the stream of a deleted session");
  truthy(/deleted/.test(error.message), `the error says why: ${error.message}`);
});

await check("LangChain OpenAI invoke, generate, batch and stream", async () => {
  const llm = new LangChainOpenAI({ model: expected.model, apiKey, configuration: { baseURL }, temperature: 0, maxTokens: expected.maxTokens, maxRetries: 0 });
  equal(await llm.invoke(expected.prompt), expected.text, "invoke");
  const generated = await llm.generate([expected.prompt, expected.other]);
  equal(generated.generations.map((g) => g[0].text), [expected.text, expected.otherText], "generate");
  equal(await llm.batch([expected.prompt, expected.other]), [expected.text, expected.otherText], "batch");
  let streamed = "";
  for await (const piece of await llm.stream(expected.prompt)) streamed += piece;
  equal(streamed, expected.text, "stream");
});

await check("LangChain ChatOpenAI invoke and stream", async () => {
  const chat = new ChatOpenAI({ model: expected.model, apiKey, configuration: { baseURL }, temperature: 0, maxTokens: expected.maxTokens, maxRetries: 0 });
  const messages = [["system", expected.chatSystem], ["human", expected.chatUser]];
  const answer = await chat.invoke(messages);
  equal(answer.content, expected.chatText, "invoke");
  let streamed = "";
  for await (const piece of await chat.stream(messages)) streamed += piece.content;
  equal(streamed, expected.chatText, "stream");
});

const failed = results.filter((r) => !r.ok);
console.log(JSON.stringify({ checks: results.length, failed: failed.length, results }));
process.exit(failed.length === 0 ? 0 : 1);
