// Drives a live OpenProfiles server with the AWS SDK for JavaScript v3, changed in nothing but
// the endpoint, and exits non-zero naming the first step whose result differs from what the
// Customer Profiles API promises. tests/wire/test_js_sdk.py runs it against its live server.
//
//   node scenario.mjs http://127.0.0.1:8000
//
// Environment: OPENPROFILES_ACCESS_KEY_ID / OPENPROFILES_SECRET_ACCESS_KEY (an admin key; the
// AWS_* names are read when these are unset), optionally OPENPROFILES_AGENT_ACCESS_KEY_ID /
// OPENPROFILES_AGENT_SECRET_ACCESS_KEY (an agent key: checks AccessDeniedException),
// OPENPROFILES_ACCOUNT_ID (for ARNs, default 000000000000), OPENPROFILES_REGION (default
// us-east-1), OPENPROFILES_MATCHES_DOMAIN (a domain whose ML matching job found matches).

import { randomUUID } from "node:crypto";
import { inspect } from "node:util";

import { Sha256 } from "@aws-crypto/sha256-js";
import * as sdk from "@aws-sdk/client-customer-profiles";
import { SignatureV4 } from "@smithy/signature-v4";

const {
  AccessDeniedException,
  AddProfileKeyCommand,
  BadRequestException,
  BatchGetProfileCommand,
  CreateDomainCommand,
  CreateProfileCommand,
  CustomerProfilesClient,
  CustomerProfilesServiceException,
  DeleteDomainCommand,
  DeleteIntegrationCommand,
  DeleteProfileCommand,
  DeleteProfileKeyCommand,
  DeleteProfileObjectCommand,
  GetDomainCommand,
  GetIntegrationCommand,
  GetMatchesCommand,
  GetProfileObjectTypeCommand,
  GetProfileObjectTypeTemplateCommand,
  ListAccountIntegrationsCommand,
  ListCalculatedAttributeDefinitionsCommand,
  ListDomainsCommand,
  ListIntegrationsCommand,
  ListProfileObjectsCommand,
  ListProfileObjectTypesCommand,
  ListProfileObjectTypeTemplatesCommand,
  ListTagsForResourceCommand,
  MergeProfilesCommand,
  PutIntegrationCommand,
  PutProfileObjectCommand,
  PutProfileObjectTypeCommand,
  ResourceNotFoundException,
  SearchProfilesCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateDomainCommand,
  UpdateProfileCommand,
} = sdk;

const endpoint = process.argv[2] ?? process.env.OPENPROFILES_ENDPOINT;
const env = process.env;
const credentials = {
  accessKeyId: env.OPENPROFILES_ACCESS_KEY_ID ?? env.AWS_ACCESS_KEY_ID,
  secretAccessKey: env.OPENPROFILES_SECRET_ACCESS_KEY ?? env.AWS_SECRET_ACCESS_KEY,
};
if (!endpoint || !credentials.accessKeyId || !credentials.secretAccessKey) {
  console.error(
    "usage: node scenario.mjs ENDPOINT, with OPENPROFILES_ACCESS_KEY_ID and " +
      "OPENPROFILES_SECRET_ACCESS_KEY set",
  );
  process.exit(2);
}
const region = env.OPENPROFILES_REGION ?? "us-east-1";
const account = env.OPENPROFILES_ACCOUNT_ID ?? "000000000000";

// One attempt: a retry would hide a first answer the SDK could not use.
const client = new CustomerProfilesClient({ region, endpoint, credentials, maxAttempts: 1 });

class Discrepancy extends Error {}

let current = "start";
const passed = [];

async function step(name, body) {
  current = name;
  await body();
  passed.push(name);
}

function check(condition, what, got) {
  if (!condition) {
    throw new Discrepancy(got === undefined ? what : `${what}; got ${inspect(got, { depth: 6 })}`);
  }
}

function same(got, want, what) {
  const a = JSON.stringify(got);
  const b = JSON.stringify(want);
  check(a === b, `${what}: want ${b}`, got);
}

// Maps compared without regard to key order.
function sameMap(got, want, what) {
  const sort = (m) => Object.fromEntries(Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
  same(sort(got), sort(want), what);
}

function isRecentDate(value) {
  return value instanceof Date && !Number.isNaN(value.getTime()) &&
    Math.abs(value.getTime() - Date.now()) < 10 * 60 * 1000;
}

// The exception the SDK throws for `command`, which must be an instance of `type` with `status`.
async function rejects(command, type, status, what, sender = client) {
  let error;
  try {
    await sender.send(command);
  } catch (caught) {
    error = caught;
  }
  check(error !== undefined, `${what}: the call succeeded, an error was expected`);
  check(
    error instanceof type,
    `${what}: want an instance of ${type.name}, got ${error?.constructor?.name} ${error?.name}: ${error?.message}`,
  );
  check(error.$metadata?.httpStatusCode === status, `${what}: want HTTP ${status}`, error.$metadata);
  check(typeof error.message === "string" && error.message.length > 0, `${what}: no message`, error);
  check(typeof error.$metadata.requestId === "string" && error.$metadata.requestId.length > 0,
    `${what}: no request id`, error.$metadata);
  return error;
}

// BatchPutProfileObject is newer than the JS SDK's model (3.1019 has no command for it): sign the
// request with the SDK's own SigV4 signer, as the client would once it has the command.
async function batchPutProfileObject(input) {
  if (typeof sdk.BatchPutProfileObjectCommand === "function") {
    return client.send(new sdk.BatchPutProfileObjectCommand(input));
  }
  const url = new URL(endpoint);
  const path = `/domains/${encodeURIComponent(input.DomainName)}/profiles/objects/batch-put-profile-object`;
  const body = JSON.stringify({ ObjectTypeName: input.ObjectTypeName, Items: input.Items });
  const signer = new SignatureV4({ credentials, region, service: "profile", sha256: Sha256 });
  const signed = await signer.sign({
    method: "PUT",
    protocol: url.protocol,
    hostname: url.hostname,
    port: url.port ? Number(url.port) : undefined,
    path,
    query: {},
    headers: { host: url.host, "content-type": "application/json" },
    body,
  });
  const response = await fetch(new URL(path, url), { method: "PUT", headers: signed.headers, body });
  const text = await response.text();
  check(response.ok, `BatchPutProfileObject answered HTTP ${response.status}`, text);
  return JSON.parse(text);
}

const suffix = randomUUID().replaceAll("-", "").slice(0, 10);
const domain = `js-${suffix}`;
const TYPE = "CrmContact";
const instance = `arn:aws:connect:${region}:111122223333:instance/${randomUUID()}`;
const domainArn = `arn:aws:profile:${region}:${account}:domains/${domain}`;
let first;
let second;
let objectKey;

async function scenario() {
  await step("CreateDomain with tags, DefaultExpirationDays and Matching", async () => {
    const created = await client.send(new CreateDomainCommand({
      DomainName: domain,
      DefaultExpirationDays: 366,
      Tags: { team: "care", city: "Zürich ✓" },
      Matching: {
        Enabled: true,
        AutoMerging: {
          Enabled: false,
          Consolidation: { MatchingAttributesList: [["EmailAddress"]] },
          ConflictResolution: { ConflictResolvingModel: "RECENCY" },
          MinAllowedConfidenceScoreForMerging: 0.9,
        },
      },
    }));
    same(created.DomainName, domain, "DomainName");
    same(created.DefaultExpirationDays, 366, "DefaultExpirationDays");
    sameMap(created.Tags, { team: "care", city: "Zürich ✓" }, "Tags");
    check(isRecentDate(created.CreatedAt), "CreatedAt is not a Date of now", created.CreatedAt);
    check(isRecentDate(created.LastUpdatedAt), "LastUpdatedAt is not a Date of now", created);
    same(created.Matching?.Enabled, true, "Matching.Enabled");
    same(created.Matching?.AutoMerging?.MinAllowedConfidenceScoreForMerging, 0.9,
      "Matching.AutoMerging.MinAllowedConfidenceScoreForMerging");
    same(created.$metadata.httpStatusCode, 200, "status");
  });

  await step("GetDomain", async () => {
    const got = await client.send(new GetDomainCommand({ DomainName: domain }));
    same(got.DefaultExpirationDays, 366, "DefaultExpirationDays");
    same(got.Stats?.ProfileCount, 0, "Stats.ProfileCount");
    same(got.Matching?.AutoMerging?.Consolidation?.MatchingAttributesList, [["EmailAddress"]],
      "Matching.AutoMerging.Consolidation");
    check(isRecentDate(got.CreatedAt), "CreatedAt is not a Date of now", got.CreatedAt);
  });

  await step("UpdateDomain", async () => {
    const updated = await client.send(new UpdateDomainCommand({
      DomainName: domain, DefaultExpirationDays: 30, Tags: { stage: "test" },
    }));
    same(updated.DefaultExpirationDays, 30, "DefaultExpirationDays");
    sameMap(updated.Tags, { team: "care", city: "Zürich ✓", stage: "test" }, "Tags");
    check(updated.LastUpdatedAt >= updated.CreatedAt, "LastUpdatedAt before CreatedAt", updated);
  });

  await step("ListDomains pages with MaxResults and NextToken", async () => {
    const seen = [];
    let token;
    let pages = 0;
    do {
      const page = await client.send(new ListDomainsCommand({ MaxResults: 1, NextToken: token }));
      check(page.Items.length <= 1, "a page holds more than MaxResults items", page.Items);
      for (const item of page.Items) {
        check(isRecentDate(item.CreatedAt) || item.CreatedAt instanceof Date,
          "ListDomains CreatedAt is not a Date", item);
        seen.push(item.DomainName);
      }
      token = page.NextToken;
      pages += 1;
    } while (token && pages < 500);
    check(seen.includes(domain), `ListDomains did not list ${domain}`, seen);
    same(new Set(seen).size, seen.length, "ListDomains repeated a domain across pages");
  });

  await step("PutProfileObjectType with a custom mapping", async () => {
    const put = await client.send(new PutProfileObjectTypeCommand({
      DomainName: domain,
      ObjectTypeName: TYPE,
      Description: "CRM contacts — ünïcödé",
      AllowProfileCreation: true,
      Tags: { owner: "crm" },
      Fields: {
        id: { Source: "_source.id", Target: "_profile.AccountNumber" },
        email: { Source: "_source.email", Target: "_profile.EmailAddress", ContentType: "EMAIL_ADDRESS" },
        first: { Source: "_source.first", Target: "_profile.FirstName" },
        city: { Source: "_source.city", Target: "_profile.Address.City" },
        tier: { Source: "_source.tier", Target: "_profile.Attributes.tier" },
        order: { Source: "_source.order" },
      },
      Keys: {
        crmId: [{ StandardIdentifiers: ["PROFILE", "UNIQUE"], FieldNames: ["id"] }],
        _email: [{ StandardIdentifiers: ["PROFILE"], FieldNames: ["email"] }],
        orderRef: [{ FieldNames: ["order"] }],
      },
    }));
    same(put.ObjectTypeName, TYPE, "ObjectTypeName");
    sameMap(put.Tags, { owner: "crm" }, "Tags");
    check(isRecentDate(put.CreatedAt), "CreatedAt is not a Date of now", put.CreatedAt);
  });

  await step("GetProfileObjectType and ListProfileObjectTypes", async () => {
    const got = await client.send(new GetProfileObjectTypeCommand({ DomainName: domain, ObjectTypeName: TYPE }));
    same(got.Description, "CRM contacts — ünïcödé", "Description");
    same(got.Keys.crmId, [{ StandardIdentifiers: ["PROFILE", "UNIQUE"], FieldNames: ["id"] }], "Keys.crmId");
    same(got.Fields.email.ContentType, "EMAIL_ADDRESS", "Fields.email.ContentType");
    const listed = await client.send(new ListProfileObjectTypesCommand({ DomainName: domain }));
    same(listed.Items.map((item) => item.ObjectTypeName), [TYPE], "ListProfileObjectTypes");
    check(listed.Items[0].CreatedAt instanceof Date, "ListProfileObjectTypes CreatedAt", listed.Items[0]);
  });

  await step("ListProfileObjectTypeTemplates pages; GetProfileObjectTypeTemplate", async () => {
    const one = await client.send(new ListProfileObjectTypeTemplatesCommand({ MaxResults: 2 }));
    same(one.Items.length, 2, "first page size");
    check(typeof one.NextToken === "string", "no NextToken on a full first page", one);
    const two = await client.send(new ListProfileObjectTypeTemplatesCommand({ MaxResults: 2, NextToken: one.NextToken }));
    check(two.Items.length > 0, "second page is empty", two);
    const ids = [...one.Items, ...two.Items].map((item) => item.TemplateId);
    same(new Set(ids).size, ids.length, "a template is on both pages");
    const template = await client.send(new GetProfileObjectTypeTemplateCommand({ TemplateId: "Salesforce-Account" }));
    same(template.TemplateId, "Salesforce-Account", "TemplateId");
    check(Object.keys(template.Fields ?? {}).length > 0 && Object.keys(template.Keys ?? {}).length > 0,
      "the template has no Fields or Keys", template);
  });

  await step("CreateProfile with Address, Attributes, BirthDate and unicode", async () => {
    first = (await client.send(new CreateProfileCommand({
      DomainName: domain,
      FirstName: "Zoë",
      LastName: "Ångström 😀",
      BirthDate: "1990-02-03",
      Gender: "FEMALE",
      PartyType: "INDIVIDUAL",
      PhoneNumber: "+1 206 345 7890",
      EmailAddress: "zoe@example.com",
      Address: { Address1: "Bahnhofstrasse 1", City: "Zürich", Country: "CH", PostalCode: "8001" },
      Attributes: { tier: "gold", "ключ": "значение", note: "𝄞 ✓" },
    }))).ProfileId;
    check(/^[0-9a-f]{32}$/.test(first), "ProfileId is not 32 hex digits", first);
    second = (await client.send(new CreateProfileCommand({
      DomainName: domain, FirstName: "Zoe", LastName: "Angstrom", EmailAddress: "zoe.a@example.com",
      AccountNumber: "acc-2",
    }))).ProfileId;
    check(second !== first, "two profiles got one id");
  });

  await step("UpdateProfile: change, clear with \"\" and delete an attribute", async () => {
    const out = await client.send(new UpdateProfileCommand({
      DomainName: domain, ProfileId: first, MiddleName: "Maria", Gender: "", Address: { City: "Genève" },
      Attributes: { tier: "platinum", note: "" },
    }));
    same(out.ProfileId, first, "ProfileId");
  });

  await step("BatchGetProfile", async () => {
    const got = await client.send(new BatchGetProfileCommand({ DomainName: domain, ProfileIds: [first, "0".repeat(32)] }));
    same(got.Profiles.length, 1, "Profiles");
    const profile = got.Profiles[0];
    same(profile.FirstName, "Zoë", "FirstName");
    same(profile.LastName, "Ångström 😀", "LastName");
    same(profile.MiddleName, "Maria", "MiddleName");
    same(profile.BirthDate, "1990-02-03", "BirthDate");
    same(profile.Gender, undefined, "Gender after clearing");
    same(profile.Address?.City, "Genève", "Address.City");
    same(profile.Address?.Country, "CH", "Address.Country kept");
    sameMap(profile.Attributes, { tier: "platinum", "ключ": "значение" }, "Attributes");
    same(got.Errors?.map((error) => error.ProfileId), ["0".repeat(32)], "Errors");
  });

  await step("SearchProfiles by phone in another format", async () => {
    const found = await client.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "_phone", Values: ["(206) 345-7890"] }));
    same(found.Items.map((item) => item.ProfileId), [first], "Items");
    same(found.Items[0].FirstName, "Zoë", "FirstName");
    same(found.Items[0].FoundByItems?.[0]?.KeyName, "_phone", "FoundByItems");
  });

  await step("SearchProfiles OR with AdditionalSearchKeys, paged with MaxResults/NextToken", async () => {
    const input = {
      DomainName: domain, KeyName: "_email", Values: ["ZOE@example.com"],
      AdditionalSearchKeys: [{ KeyName: "_account", Values: ["acc-2"] }], LogicalOperator: "OR",
      MaxResults: 1,
    };
    const one = await client.send(new SearchProfilesCommand(input));
    same(one.Items.length, 1, "first page size");
    check(typeof one.NextToken === "string" && one.NextToken.length > 0, "no NextToken", one);
    const two = await client.send(new SearchProfilesCommand({ ...input, NextToken: one.NextToken }));
    same(two.Items.length, 1, "second page size");
    same([one.Items[0].ProfileId, two.Items[0].ProfileId].sort(), [first, second].sort(), "OR found");
  });

  await step("SearchProfiles AND", async () => {
    const none = await client.send(new SearchProfilesCommand({
      DomainName: domain, KeyName: "_email", Values: ["zoe@example.com"],
      AdditionalSearchKeys: [{ KeyName: "_account", Values: ["acc-2"] }], LogicalOperator: "AND",
    }));
    same(none.Items, [], "AND of two profiles' keys");
    const both = await client.send(new SearchProfilesCommand({
      DomainName: domain, KeyName: "_email", Values: ["zoe.a@example.com"],
      AdditionalSearchKeys: [{ KeyName: "_account", Values: ["acc-2"] }], LogicalOperator: "AND",
    }));
    same(both.Items.map((item) => item.ProfileId), [second], "AND of one profile's keys");
  });

  let created;
  await step("PutProfileObject creates a profile from a record", async () => {
    const record = { id: "c-1", email: "nandu@example.com", first: "Ñandú", city: "Кёльн", tier: "silver", order: "o/1 2+3:ü" };
    const put = await client.send(new PutProfileObjectCommand({ DomainName: domain, ObjectTypeName: TYPE, Object: JSON.stringify(record) }));
    objectKey = put.ProfileObjectUniqueKey;
    check(typeof objectKey === "string" && objectKey.length > 0, "no ProfileObjectUniqueKey", put);
    const found = await client.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "crmId", Values: ["c-1"] }));
    same(found.Items.length, 1, "profiles found by crmId");
    created = found.Items[0];
    same(created.FirstName, "Ñandú", "FirstName mapped");
    same(created.Address?.City, "Кёльн", "Address.City mapped");
    same(created.Attributes?.tier, "silver", "Attributes.tier mapped");
  });

  await step("BatchPutProfileObject", async () => {
    const out = await batchPutProfileObject({
      DomainName: domain,
      ObjectTypeName: TYPE,
      Items: [
        { Id: "a", Object: JSON.stringify({ id: "c-2", email: "nandu@example.com", order: "o-2" }) },
        { Id: "b", Object: "[1, 2]" },
      ],
    });
    same(out.Successful?.map((item) => item.Id), ["a"], "Successful");
    same(out.Failed?.map((item) => [item.Id, item.Code]), [["b", 400]], "Failed");
  });

  await step("ListProfileObjects with ObjectFilter; DeleteProfileObject", async () => {
    const all = await client.send(new ListProfileObjectsCommand({ DomainName: domain, ObjectTypeName: TYPE, ProfileId: created.ProfileId }));
    same(all.Items.length, 2, "objects of the profile");
    const filtered = await client.send(new ListProfileObjectsCommand({
      DomainName: domain, ObjectTypeName: TYPE, ProfileId: created.ProfileId,
      ObjectFilter: { KeyName: "orderRef", Values: ["o/1 2+3:ü"] },
    }));
    same(filtered.Items.length, 1, "filtered objects");
    same(filtered.Items[0].ProfileObjectUniqueKey, objectKey, "ProfileObjectUniqueKey");
    same(JSON.parse(filtered.Items[0].Object).city, "Кёльн", "Object");
    const paged = await client.send(new ListProfileObjectsCommand({ DomainName: domain, ObjectTypeName: TYPE, ProfileId: created.ProfileId, MaxResults: 1 }));
    same(paged.Items.length, 1, "page size");
    check(typeof paged.NextToken === "string", "no NextToken on a full page", paged);
    const deleted = await client.send(new DeleteProfileObjectCommand({
      DomainName: domain, ObjectTypeName: TYPE, ProfileId: created.ProfileId, ProfileObjectUniqueKey: objectKey,
    }));
    check(typeof deleted.Message === "string", "DeleteProfileObject Message", deleted);
    const left = await client.send(new ListProfileObjectsCommand({
      DomainName: domain, ObjectTypeName: TYPE, ProfileId: created.ProfileId,
      ObjectFilter: { KeyName: "orderRef", Values: ["o/1 2+3:ü"] },
    }));
    same(left.Items, [], "objects left after delete");
  });

  await step("AddProfileKey and DeleteProfileKey", async () => {
    const value = "ü/1:2 +";
    const added = await client.send(new AddProfileKeyCommand({ DomainName: domain, ProfileId: first, KeyName: "orderRef", Values: [value] }));
    same(added.KeyName, "orderRef", "KeyName");
    same(added.Values, [value], "Values");
    const found = await client.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "orderRef", Values: [value] }));
    same(found.Items.map((item) => item.ProfileId), [first], "found by the added key");
    await client.send(new DeleteProfileKeyCommand({ DomainName: domain, ProfileId: first, KeyName: "orderRef", Values: [value] }));
    const gone = await client.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "orderRef", Values: [value] }));
    same(gone.Items, [], "found after DeleteProfileKey");
  });

  await step("MergeProfiles with FieldSourceProfileIds", async () => {
    const merged = await client.send(new MergeProfilesCommand({
      DomainName: domain, MainProfileId: first, ProfileIdsToBeMerged: [second],
      FieldSourceProfileIds: { AccountNumber: second },
    }));
    check(typeof merged.Message === "string", "MergeProfiles Message", merged);
    const got = await client.send(new BatchGetProfileCommand({ DomainName: domain, ProfileIds: [first] }));
    same(got.Profiles[0].AccountNumber, "acc-2", "AccountNumber from the merged profile");
    const found = await client.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "_account", Values: ["acc-2"] }));
    same(found.Items.map((item) => item.ProfileId), [first], "the merged profile's key finds the main one");
  });

  await step("PutIntegration, GetIntegration, ListIntegrations, ListAccountIntegrations", async () => {
    const put = await client.send(new PutIntegrationCommand({ DomainName: domain, Uri: instance, Tags: { channel: "voice" } }));
    same(put.Uri, instance, "Uri");
    same(put.ObjectTypeName, "CTR", "ObjectTypeName");
    check(isRecentDate(put.CreatedAt), "CreatedAt is not a Date of now", put.CreatedAt);
    const got = await client.send(new GetIntegrationCommand({ DomainName: domain, Uri: instance }));
    same(got.DomainName, domain, "DomainName");
    const listed = await client.send(new ListIntegrationsCommand({ DomainName: domain, IncludeHidden: true }));
    same(listed.Items.map((item) => item.Uri), [instance], "ListIntegrations");
    const account = await client.send(new ListAccountIntegrationsCommand({ Uri: instance, IncludeHidden: false }));
    same(account.Items.map((item) => item.DomainName), [domain], "ListAccountIntegrations");
  });

  await step("TagResource, UntagResource, ListTagsForResource (ARNs in the path)", async () => {
    // Tag keys whose order differs encoded and decoded ('+' %2B, '/' %2F, ':' %3A): SigV4 signs
    // the query string sorted by encoded name and value.
    const keys = ["k+1", "k-1", "k.1", "k/1", "k:1", "k=1", "k_1", "K1"];
    await client.send(new TagResourceCommand({
      resourceArn: domainArn, tags: Object.fromEntries(keys.map((key) => [key, `ü ${key}`])),
    }));
    sameMap((await client.send(new ListTagsForResourceCommand({ resourceArn: domainArn }))).tags,
      { team: "care", city: "Zürich ✓", stage: "test", ...Object.fromEntries(keys.map((key) => [key, `ü ${key}`])) },
      "domain tags after TagResource");
    await client.send(new UntagResourceCommand({ resourceArn: domainArn, tagKeys: [...keys.slice(1).reverse(), "stage"] }));
    sameMap((await client.send(new ListTagsForResourceCommand({ resourceArn: domainArn }))).tags,
      { team: "care", city: "Zürich ✓", "k+1": "ü k+1" }, "domain tags after UntagResource");

    const typeArn = `${domainArn}/object-types/${TYPE}`;
    await client.send(new TagResourceCommand({ resourceArn: typeArn, tags: { env: "test" } }));
    sameMap((await client.send(new ListTagsForResourceCommand({ resourceArn: typeArn }))).tags,
      { owner: "crm", env: "test" }, "object type tags");

    // The integration's ARN carries its URI encoded: ':' and '/' are encoded twice on the wire.
    const integrationArn = `${domainArn}/integrations/${encodeURIComponent(instance)}`;
    await client.send(new TagResourceCommand({ resourceArn: integrationArn, tags: { env: "test" } }));
    sameMap((await client.send(new ListTagsForResourceCommand({ resourceArn: integrationArn }))).tags,
      { channel: "voice", env: "test" }, "integration tags");
    await client.send(new DeleteIntegrationCommand({ DomainName: domain, Uri: instance }));
    await rejects(new ListTagsForResourceCommand({ resourceArn: integrationArn }), ResourceNotFoundException, 404,
      "tags of a deleted integration");
  });

  await step("GetMatches", async () => {
    const own = await client.send(new GetMatchesCommand({ DomainName: domain, MaxResults: 10 }));
    same(own.Matches, [], "Matches before any job");
    same(own.PotentialMatches, 0, "PotentialMatches before any job");
    const matchesDomain = env.OPENPROFILES_MATCHES_DOMAIN;
    if (!matchesDomain) return;
    const one = await client.send(new GetMatchesCommand({ DomainName: matchesDomain, MaxResults: 1 }));
    check(one.PotentialMatches >= 2, "PotentialMatches", one);
    same(one.Matches.length, 1, "first page size");
    check(isRecentDate(one.MatchGenerationDate), "MatchGenerationDate is not a Date of now", one);
    const two = await client.send(new GetMatchesCommand({ DomainName: matchesDomain, MaxResults: 1, NextToken: one.NextToken }));
    for (const match of [...one.Matches, ...two.Matches]) {
      check(typeof match.ConfidenceScore === "number" && match.ConfidenceScore > 0 && match.ConfidenceScore <= 1,
        "ConfidenceScore is not a number in (0, 1]", match);
      check(match.ProfileIds.length >= 2 && match.ProfileIds.every((id) => /^[0-9a-f]{32}$/.test(id)),
        "ProfileIds", match);
    }
    check(one.Matches[0].MatchId !== two.Matches[0]?.MatchId, "the same match on both pages", [one, two]);
  });

  await step("a missing domain is a ResourceNotFoundException (404)", async () => {
    const error = await rejects(new GetDomainCommand({ DomainName: `missing-${suffix}` }), ResourceNotFoundException, 404,
      "GetDomain of a missing domain");
    check(error.message.includes(`missing-${suffix}`), "the message does not name the domain", error.message);
    same(error.$fault, "client", "$fault");
    same(error.$metadata.attempts, 1, "attempts");
    await rejects(new SearchProfilesCommand({ DomainName: `missing-${suffix}`, KeyName: "_email", Values: ["x"] }),
      ResourceNotFoundException, 404, "SearchProfiles in a missing domain");
  });

  await step("bad values are a BadRequestException (400)", async () => {
    const gender = await rejects(new CreateProfileCommand({ DomainName: domain, Gender: "NOPE" }), BadRequestException, 400,
      "an unknown Gender");
    check(gender.message.includes("Gender"), "the message does not name Gender", gender.message);
    // The JS SDK validates nothing before sending: the server must.
    const required = await rejects(new CreateDomainCommand({ DomainName: `x-${suffix}` }), BadRequestException, 400,
      "CreateDomain without DefaultExpirationDays");
    check(required.message.includes("DefaultExpirationDays"), "the message does not name the member", required.message);
    await rejects(new ListDomainsCommand({ MaxResults: 0 }), BadRequestException, 400, "MaxResults 0 (a query-string member)");
    await rejects(new SearchProfilesCommand({ DomainName: domain, KeyName: "_email", Values: ["x"], NextToken: "not+a/token=" }),
      BadRequestException, 400, "a NextToken the server did not issue");
    await rejects(new PutProfileObjectCommand({ DomainName: domain, ObjectTypeName: TYPE, Object: "{not json" }),
      BadRequestException, 400, "an Object that is not JSON");
  });

  await step("an operation not implemented is a 501 the SDK does not retry", async () => {
    const retrying = new CustomerProfilesClient({ region, endpoint, credentials, maxAttempts: 3 });
    const error = await rejects(new ListCalculatedAttributeDefinitionsCommand({ DomainName: domain }),
      CustomerProfilesServiceException, 501, "ListCalculatedAttributeDefinitions", retrying);
    same(error.name, "NotImplementedException", "name");
    same(error.$fault, "server", "$fault");
    same(error.$metadata.attempts, 1, "attempts");
  });

  await step("a wrong secret is an InvalidSignatureException (403)", async () => {
    const wrong = new CustomerProfilesClient({
      region, endpoint, maxAttempts: 1,
      credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: `${credentials.secretAccessKey}x` },
    });
    const error = await rejects(new ListDomainsCommand({}), CustomerProfilesServiceException, 403, "a wrong secret", wrong);
    same(error.name, "InvalidSignatureException", "name");
  });

  if (env.OPENPROFILES_AGENT_ACCESS_KEY_ID) {
    await step("an agent's key may search but not create a domain (AccessDeniedException, 403)", async () => {
      const agent = new CustomerProfilesClient({
        region, endpoint, maxAttempts: 1,
        credentials: {
          accessKeyId: env.OPENPROFILES_AGENT_ACCESS_KEY_ID,
          secretAccessKey: env.OPENPROFILES_AGENT_SECRET_ACCESS_KEY,
        },
      });
      const found = await agent.send(new SearchProfilesCommand({ DomainName: domain, KeyName: "_phone", Values: ["+12063457890"] }));
      same(found.Items.map((item) => item.ProfileId), [first], "an agent's search");
      await rejects(new CreateDomainCommand({ DomainName: `agent-${suffix}`, DefaultExpirationDays: 1 }),
        AccessDeniedException, 403, "CreateDomain with an agent's key", agent);
    });
  }

  await step("DeleteProfile and DeleteDomain", async () => {
    const out = await client.send(new DeleteProfileCommand({ DomainName: domain, ProfileId: first }));
    check(typeof out.Message === "string", "DeleteProfile Message", out);
    await rejects(new DeleteProfileCommand({ DomainName: domain, ProfileId: first }), ResourceNotFoundException, 404,
      "deleting a deleted profile");
    const deleted = await client.send(new DeleteDomainCommand({ DomainName: domain }));
    check(typeof deleted.Message === "string", "DeleteDomain Message", deleted);
    await rejects(new GetDomainCommand({ DomainName: domain }), ResourceNotFoundException, 404, "GetDomain after DeleteDomain");
  });
}

try {
  await scenario();
  console.log(`JS SDK scenario: ${passed.length} steps passed against ${endpoint}`);
} catch (error) {
  if (error instanceof Discrepancy) {
    console.error(`JS SDK discrepancy in step "${current}": ${error.message}`);
  } else {
    console.error(
      `JS SDK step "${current}" failed: ${error?.name}: ${error?.message}` +
        (error?.$metadata ? ` (HTTP ${error.$metadata.httpStatusCode}, request id ${error.$metadata.requestId})` : ""),
    );
    if (!error?.$metadata) console.error(error?.stack);
  }
  process.exit(1);
}
