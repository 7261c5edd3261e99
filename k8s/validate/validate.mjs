#!/usr/bin/env node
// Validates Kubernetes manifests (multi-document YAML, as `kubectl kustomize` prints them) against the schemas
// kubernetes-models derives from the Kubernetes OpenAPI definitions: each object becomes the model class of its
// apiVersion and kind, and the model's validate() rejects a wrong type, a bad enum value or a missing required field.
//
// Those schemas accept fields they do not declare, and the API server would silently drop such a field (a misspelt
// "livenessProbe" is no probe at all), so this script also rejects unknown fields: it watches which properties the
// schema validator reads (it reads every property its schema declares, and every key of a map), and a key it never
// read is one the schema does not know. An object none of whose keys is read has a free-form schema and is skipped.
//
// Usage: node validate.mjs [--json] [FILE ...]   (no FILE, or "-": standard input). Exit 0: all valid; 1: invalid;
// 2: usage. --json prints the objects as one JSON array on stdout (the summary then goes to stderr), for a program
// that checks more than the schemas do.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const usage = "usage: node validate.mjs [--json] [FILE ...]  (no FILE or '-': read standard input)";

/** The module path of an object's model class: "apps/v1" + "StatefulSet" -> kubernetes-models/apps/v1/StatefulSet. */
function modelModule(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind))
    throw new Error("apiVersion and kind must be strings");
  const parts = apiVersion.split("/");
  if (parts.length > 2 || parts.some((part) => !/^[a-z0-9.-]+$/.test(part))) throw new Error(`bad apiVersion '${apiVersion}'`);
  return `kubernetes-models/${apiVersion}/${kind}`;
}

async function modelClass(apiVersion, kind) {
  const path = modelModule(apiVersion, kind);
  try {
    const module = await import(path);
    const model = module[kind];
    if (typeof model === "function") return model;
  } catch (error) {
    if (error?.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED" && error?.code !== "ERR_MODULE_NOT_FOUND") throw error;
  }
  throw new Error(`no schema for ${apiVersion} ${kind}: not a built-in Kubernetes kind`);
}

/**
 * A view of `value` that records, for each object in it, which of its keys were read. Each object's record is kept
 * in `reads` (keyed by the object itself), so that the walk afterwards can compare it with the object's own keys.
 */
function tracked(value, reads) {
  if (value === null || typeof value !== "object") return value;
  if (!reads.has(value)) reads.set(value, new Set());
  const read = reads.get(value);
  const views = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.hasOwn(target, key)) return child;
      read.add(key);
      if (!views.has(key)) views.set(key, tracked(child, reads));
      return views.get(key);
    },
    has(target, key) {
      if (typeof key === "string") read.add(key);
      return Reflect.has(target, key);
    },
  });
}

/** Paths of keys in `value` that the validator never read, in objects where it read some keys. */
function unknownFields(value, reads, path, found) {
  if (value === null || typeof value !== "object") return found;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, reads, `${path}[${i}]`, found));
    return found;
  }
  const read = reads.get(value);
  for (const key of Object.keys(value)) {
    const child = path === "" ? key : `${path}.${key}`;
    if (read && read.size > 0 && !read.has(key)) found.push(child);
    else unknownFields(value[key], reads, child, found);
  }
  return found;
}

/** The problems of one manifest object; empty when it is valid. */
async function problems(object) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) return ["a manifest must be a mapping"];
  let Model;
  try {
    Model = await modelClass(object.apiVersion, object.kind);
  } catch (error) {
    return [error.message];
  }
  const model = new Model(object);
  const reads = new Map();
  const found = [];
  try {
    model.validate.call(tracked(model, reads));
  } catch (error) {
    found.push(error.message);
  }
  for (const field of unknownFields(model, reads, "", [])) found.push(`unknown field ${field}`);
  return found;
}

function describe(object, index) {
  const name = object?.metadata?.name ?? `document ${index + 1}`;
  return `${object?.kind ?? "?"}/${name}`;
}

async function main(args) {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    return 0;
  }
  const json = args.includes("--json");
  const files = args.filter((arg) => arg !== "--json");
  const unknownOption = files.find((arg) => arg.startsWith("-") && arg !== "-");
  if (unknownOption) {
    console.error(`validate: unknown option '${unknownOption}' (${usage})`);
    return 2;
  }
  const sources = files.length === 0 ? ["-"] : files;
  const all = [];
  let objects = 0;
  let invalid = 0;
  for (const source of sources) {
    const text = readFileSync(source === "-" ? 0 : source, "utf8");
    const documents = parseAllDocuments(text);
    for (const [index, document] of documents.entries()) {
      const where = source === "-" ? "stdin" : source;
      if (document.errors.length > 0) {
        console.error(`${where}: document ${index + 1}: ${document.errors[0].message}`);
        invalid++;
        continue;
      }
      const object = document.toJS();
      if (object === null) continue;
      objects++;
      all.push(object);
      const found = await problems(object);
      for (const problem of found) console.error(`${where}: ${describe(object, index)}: ${problem}`);
      if (found.length > 0) invalid++;
    }
  }
  if (objects === 0 && invalid === 0) {
    console.error("validate: no manifest found in the input");
    return 1;
  }
  if (json) console.log(JSON.stringify(all));
  (json ? console.error : console.log)(`${objects} objects, ${invalid} invalid`);
  return invalid === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
