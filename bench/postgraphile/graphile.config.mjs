// PostGraphile v5 over gql_app's tables: the bench's peer (bench/postgraphile.py runs it).
// The amber preset as recommended, plus what the documents need to ask for the same
// data as gql_app: a `published` condition (gql_app's `filter: {published: true}` is
// `published_at IS NOT NULL`, which the equality-only `condition` cannot say) and
// post_tags ordered by the tag's name (gql_app lists a post's tags by name).
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { addPgTableCondition, addPgTableOrderBy, orderByAscDesc } from "postgraphile/utils";

const PublishedCondition = addPgTableCondition(
  { schemaName: "public", tableName: "posts" },
  "published",
  (build) => ({
    description: "true: published posts only; false: drafts only.",
    type: build.graphql.GraphQLBoolean,
  }),
  (value, { sql, sqlTableAlias }) =>
    value == null
      ? null
      : value
        ? sql`${sqlTableAlias}.published_at is not null`
        : sql`${sqlTableAlias}.published_at is null`,
);

const TagNameOrder = addPgTableOrderBy({ schemaName: "public", tableName: "post_tags" }, (build) =>
  orderByAscDesc("TAG_NAME", (queryBuilder) => {
    const { sql } = build;
    const tag = sql.identifier(Symbol("tag"));
    return {
      fragment: sql`(select ${tag}.name from public.tags as ${tag} where ${tag}.id = ${queryBuilder.alias}.tag_id)`,
      codec: build.dataplanPg.TYPES.text,
    };
  }),
);

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  plugins: [PublishedCondition, TagNameOrder],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PG_POOL_SIZE ?? 20) },
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.PORT ?? 5678),
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};

export default preset;
