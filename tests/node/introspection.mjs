// graphql-js's own introspection queries, as GraphiQL, GraphQL Code Generator, Rover,
// Postman and Insomnia send them: `node introspection.mjs` prints a JSON object of
// name → query, for tests/test_introspection.py to send to a live payql.
import { getIntrospectionQuery, version } from "graphql";

const every = {
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
};
process.stdout.write(
  JSON.stringify({
    version,
    queries: {
      default: getIntrospectionQuery(),
      "every-option": getIntrospectionQuery(every),
    },
  }),
);
