// The official SpiceDB Node client (@authzed/authzed-node) against relengine's SpiceDB API.
// Usage: node client_test.cjs <host:port> <preshared key>
// Writes a schema and relationships, checks, looks up resources and watches; prints one JSON
// object with what each step saw (test_node_client.py asserts on it). A step that fails
// records its gRPC code and message instead of stopping the others.
"use strict";

const { v1 } = require("@authzed/authzed-node");

const [address, key] = process.argv.slice(2);
const client = v1.NewClient(key, address, v1.ClientSecurity.INSECURE_PLAINTEXT_CREDENTIALS);
const p = client.promises;

const SCHEMA = `
definition user {}

definition doc {
    relation viewer: user
    permission view = viewer
}
`;

function object(type, id) {
  return v1.ObjectReference.create({ objectType: type, objectId: id });
}

function subject(type, id) {
  return v1.SubjectReference.create({ object: object(type, id), optionalRelation: "" });
}

function touch(resource, relation, user) {
  const [type, id] = resource.split(":");
  return v1.RelationshipUpdate.create({
    operation: v1.RelationshipUpdate_Operation.TOUCH,
    relationship: v1.Relationship.create({ resource: object(type, id), relation, subject: subject("user", user) }),
  });
}

function fresh(token) {
  return v1.Consistency.create({ requirement: { oneofKind: "atLeastAsFresh", atLeastAsFresh: token } });
}

function failure(err) {
  return { code: err.code, details: err.details };
}

async function watchOnce(after, timeoutMs) {
  // Watch from `after`, write one more relationship, and wait for its update.
  return new Promise((resolve) => {
    const updates = [];
    let done = false;
    const finish = (outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.cancel();
      resolve(outcome);
    };
    const stream = client.watch(v1.WatchRequest.create({ optionalObjectTypes: ["doc"], optionalStartCursor: after }));
    stream.on("data", (response) => {
      for (const u of response.updates) {
        const r = u.relationship;
        updates.push(`${r.resource.objectType}:${r.resource.objectId}#${r.relation}@` +
                     `${r.subject.object.objectType}:${r.subject.object.objectId}`);
      }
      if (updates.length > 0) finish({ updates });
    });
    stream.on("error", (err) => finish({ error: failure(err) }));
    const timer = setTimeout(() => finish({ error: { code: "TIMEOUT", details: `no update in ${timeoutMs} ms`, updates } }),
                             timeoutMs);
    p.writeRelationships(v1.WriteRelationshipsRequest.create({ updates: [touch("doc:3", "viewer", "carl")] }))
      .catch((err) => finish({ error: failure(err) }));
  });
}

async function main() {
  const out = {};
  try {
    const schema = await p.writeSchema(v1.WriteSchemaRequest.create({ schema: SCHEMA }));
    out.schemaWritten = Boolean(schema.writtenAt && schema.writtenAt.token);
    const written = await p.writeRelationships(v1.WriteRelationshipsRequest.create({
      updates: [touch("doc:1", "viewer", "ann"), touch("doc:2", "viewer", "ann"), touch("doc:3", "viewer", "bob")],
    }));
    out.writtenAt = written.writtenAt.token;
    const checks = {};
    for (const [doc, user] of [["1", "ann"], ["3", "ann"], ["3", "bob"]]) {
      const response = await p.checkPermission(v1.CheckPermissionRequest.create({
        consistency: fresh(written.writtenAt), resource: object("doc", doc), permission: "view",
        subject: subject("user", user),
      }));
      checks[`doc:${doc}#view@user:${user}`] = v1.CheckPermissionResponse_Permissionship[response.permissionship];
    }
    out.checks = checks;
    const found = await p.lookupResources(v1.LookupResourcesRequest.create({
      consistency: fresh(written.writtenAt), resourceObjectType: "doc", permission: "view",
      subject: subject("user", "ann"),
    }));
    out.lookedUp = found.map((r) => r.resourceObjectId).sort();
    try {
      await p.checkPermission(v1.CheckPermissionRequest.create({
        resource: object("nope", "1"), permission: "view", subject: subject("user", "ann"),
      }));
      out.unknownType = "no error";
    } catch (err) {
      out.unknownType = failure(err);
    }
    out.watch = await watchOnce(written.writtenAt, 10000);
  } catch (err) {
    out.error = failure(err);
  } finally {
    client.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main();
