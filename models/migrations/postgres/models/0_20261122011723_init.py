from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "counter" (
    "name" VARCHAR(32) NOT NULL PRIMARY KEY,
    "value" BIGINT NOT NULL
);
COMMENT ON TABLE "counter" IS 'Named counters, e.g. the order number sequence.';
CREATE TABLE IF NOT EXISTS "idempotency_key" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "scope" VARCHAR(160) NOT NULL,
    "key" VARCHAR(255) NOT NULL,
    "fingerprint" VARCHAR(64) NOT NULL,
    "resource_id" VARCHAR(40) NOT NULL,
    "completed" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "uid_idempotency_scope_e46a2c" UNIQUE ("scope", "key")
);
COMMENT ON TABLE "idempotency_key" IS 'A caller''s key for one operation: the first request''s fingerprint and result.';
CREATE TABLE IF NOT EXISTS "customer_order" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "number" VARCHAR(32) NOT NULL UNIQUE,
    "customer_id" VARCHAR(64) NOT NULL,
    "customer_name" VARCHAR(200) NOT NULL,
    "customer_email" VARCHAR(254) NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "total" BIGINT NOT NULL,
    "status" VARCHAR(24) NOT NULL,
    "billing_address" JSONB,
    "stock_restored" BOOL NOT NULL,
    "version" INT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_customer_or_custome_96b412" ON "customer_order" ("customer_id");
CREATE INDEX IF NOT EXISTS "idx_customer_or_custome_1fcda6" ON "customer_order" ("customer_email");
CREATE INDEX IF NOT EXISTS "idx_customer_or_created_f903a0" ON "customer_order" ("created_at");
COMMENT ON COLUMN "customer_order"."status" IS 'PENDING: PENDING\nPAID: PAID\nPARTIALLY_REFUNDED: PARTIALLY_REFUNDED\nREFUNDED: REFUNDED\nCANCELLED: CANCELLED';
CREATE TABLE IF NOT EXISTS "order_line" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "position" INT NOT NULL,
    "sku" VARCHAR(64) NOT NULL,
    "name" VARCHAR(200) NOT NULL,
    "quantity" INT NOT NULL,
    "unit_price" BIGINT NOT NULL,
    "order_id" VARCHAR(40) NOT NULL REFERENCES "customer_order" ("id") ON DELETE RESTRICT,
    CONSTRAINT "uid_order_line_order_i_5f79a1" UNIQUE ("order_id", "position")
);
CREATE TABLE IF NOT EXISTS "payment" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "customer_id" VARCHAR(64) NOT NULL,
    "amount" BIGINT NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "status" VARCHAR(24) NOT NULL,
    "payment_method" VARCHAR(24) NOT NULL,
    "capture_method" VARCHAR(12) NOT NULL,
    "gateway" VARCHAR(32) NOT NULL,
    "gateway_transaction_id" VARCHAR(255),
    "client_secret" VARCHAR(255),
    "failure_code" VARCHAR(64),
    "failure_message" VARCHAR(500),
    "billing_address" JSONB,
    "card_brand" VARCHAR(32),
    "card_last4" VARCHAR(4),
    "card_exp_month" INT,
    "card_exp_year" INT,
    "metadata" JSONB NOT NULL,
    "captured" BIGINT NOT NULL,
    "refunded" BIGINT NOT NULL,
    "refund_pending" BIGINT NOT NULL,
    "version" INT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "processed_at" TIMESTAMPTZ,
    "completed_at" TIMESTAMPTZ,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "order_id" VARCHAR(40) NOT NULL REFERENCES "customer_order" ("id") ON DELETE RESTRICT
);
CREATE INDEX IF NOT EXISTS "idx_payment_custome_9a9aca" ON "payment" ("customer_id");
CREATE INDEX IF NOT EXISTS "idx_payment_gateway_d65dc5" ON "payment" ("gateway_transaction_id");
CREATE INDEX IF NOT EXISTS "idx_payment_created_d56029" ON "payment" ("created_at");
COMMENT ON COLUMN "payment"."status" IS 'PENDING: PENDING\nPROCESSING: PROCESSING\nREQUIRES_ACTION: REQUIRES_ACTION\nAUTHORIZED: AUTHORIZED\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELLED: CANCELLED\nPARTIALLY_REFUNDED: PARTIALLY_REFUNDED\nREFUNDED: REFUNDED';
COMMENT ON COLUMN "payment"."payment_method" IS 'CREDIT_CARD: CREDIT_CARD\nDEBIT_CARD: DEBIT_CARD\nPAYPAL: PAYPAL\nBANK_TRANSFER: BANK_TRANSFER\nAPPLE_PAY: APPLE_PAY\nGOOGLE_PAY: GOOGLE_PAY\nCASH_ON_DELIVERY: CASH_ON_DELIVERY';
COMMENT ON COLUMN "payment"."capture_method" IS 'AUTOMATIC: AUTOMATIC\nMANUAL: MANUAL';
CREATE TABLE IF NOT EXISTS "dispute" (
    "id" VARCHAR(255) NOT NULL PRIMARY KEY,
    "amount" BIGINT NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "status" VARCHAR(32) NOT NULL,
    "reason" VARCHAR(64),
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "payment_id" VARCHAR(40) NOT NULL REFERENCES "payment" ("id") ON DELETE RESTRICT
);
COMMENT ON TABLE "dispute" IS 'A chargeback the gateway reported, kept as its latest state.';
CREATE TABLE IF NOT EXISTS "payment_event" (
    "id" BIGINT NOT NULL PRIMARY KEY,
    "type" VARCHAR(64) NOT NULL,
    "from_status" VARCHAR(24),
    "to_status" VARCHAR(24),
    "source" VARCHAR(12) NOT NULL,
    "data" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "payment_id" VARCHAR(40) NOT NULL REFERENCES "payment" ("id") ON DELETE RESTRICT
);
COMMENT ON COLUMN "payment_event"."from_status" IS 'PENDING: PENDING\nPROCESSING: PROCESSING\nREQUIRES_ACTION: REQUIRES_ACTION\nAUTHORIZED: AUTHORIZED\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELLED: CANCELLED\nPARTIALLY_REFUNDED: PARTIALLY_REFUNDED\nREFUNDED: REFUNDED';
COMMENT ON COLUMN "payment_event"."to_status" IS 'PENDING: PENDING\nPROCESSING: PROCESSING\nREQUIRES_ACTION: REQUIRES_ACTION\nAUTHORIZED: AUTHORIZED\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELLED: CANCELLED\nPARTIALLY_REFUNDED: PARTIALLY_REFUNDED\nREFUNDED: REFUNDED';
COMMENT ON COLUMN "payment_event"."source" IS 'API: API\nWEBHOOK: WEBHOOK\nGATEWAY: GATEWAY\nADMIN: ADMIN\nSYSTEM: SYSTEM';
COMMENT ON TABLE "payment_event" IS 'The audit trail: appended in the transaction of the change, never updated.';
CREATE TABLE IF NOT EXISTS "product" (
    "sku" VARCHAR(64) NOT NULL PRIMARY KEY,
    "name" VARCHAR(200) NOT NULL,
    "price" BIGINT NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "stock" INT NOT NULL
);
CREATE TABLE IF NOT EXISTS "refund" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "amount" BIGINT NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "reason" VARCHAR(500),
    "status" VARCHAR(12) NOT NULL,
    "gateway_refund_id" VARCHAR(255),
    "failure_reason" VARCHAR(500),
    "created_at" TIMESTAMPTZ NOT NULL,
    "completed_at" TIMESTAMPTZ,
    "payment_id" VARCHAR(40) NOT NULL REFERENCES "payment" ("id") ON DELETE RESTRICT
);
COMMENT ON COLUMN "refund"."status" IS 'PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED';
CREATE TABLE IF NOT EXISTS "webhook_event" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "gateway" VARCHAR(32) NOT NULL,
    "event_id" VARCHAR(255) NOT NULL,
    "type" VARCHAR(100) NOT NULL,
    "payment_id" VARCHAR(40),
    "outcome" VARCHAR(16) NOT NULL,
    "payload" JSONB NOT NULL,
    "received_at" TIMESTAMPTZ NOT NULL,
    CONSTRAINT "uid_webhook_eve_gateway_2758a2" UNIQUE ("gateway", "event_id")
);
CREATE INDEX IF NOT EXISTS "idx_webhook_eve_payment_b44132" ON "webhook_event" ("payment_id");
COMMENT ON TABLE "webhook_event" IS 'Every accepted webhook, once: the unique (gateway, event_id) dedupes retries.';
CREATE TABLE IF NOT EXISTS "simulated_intent" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "client_secret" VARCHAR(100) NOT NULL UNIQUE,
    "reference" VARCHAR(40) NOT NULL,
    "data" JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS "idx_simulated_i_referen_c174a2" ON "simulated_intent" ("reference");
CREATE TABLE IF NOT EXISTS "simulated_reply" (
    "key" VARCHAR(255) NOT NULL PRIMARY KEY,
    "data" JSONB NOT NULL
);
COMMENT ON TABLE "simulated_reply" IS 'The first answer to an idempotency key, given again to a retry.';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        """


MODELS_STATE = (
    "eJztXetv2zgS/1cIf9kW8AaJ82gvOBzgOGrra2LnbGd77XohMBLjCJEpVY+kxl7+9xtS75"
    "cr2VIsq/oSK+QMJf84Hs6L1N+dpSYT1TwYaDa1iNE5R393KF4SuIh3dVEH63rQwRosfKdy"
    "WilEdGdaBpYsaL7HqkmgSSamZCi6pWiUEY/gBjJyWcwuIgeLA2Q9EKQZMjEQtZd38GGS7z"
    "ahEjlgg8qaBKMqdLEhv00V+E+0tAUBQvY9//wLmhUqkx/E9P7VH8V7hahyBAb+CZ28R7RW"
    "Om8dPGDjA6dlT3cnSppqL2mYXl9ZDxr1GeDxWeuCUGJgi8gheKitqi6QXpPzvNBgGTbxH1"
    "QOGmRyj22Vgcy4nWcI2jqiOBrPxKkwE8VOYgI8jhCmbpOkUTZ5CrVMjsES/xBVQhfWA/x7"
    "3Htx7hMg4VCxG/7Rnww+9Sdvjntv2Q01kABHMkZuT493vfAhsIWdQTjyAdRPWLVTsL5QFk"
    "NqpaPts8Tghq+wCdxeQ4B3IMMeuIdVob1gT/D7P3q94+N3vcPjs/enJ+/enb4/fA+0/HGT"
    "Xe/WTMnF8ONwNIvOBmt4eWGyfv8YmgLWcIelx2dsyGKiR+tpWbTJrmVvGW/BFC84lux7sw"
    "d2NculYuq2RdKUjte1VunIIaKfKp0+kuAnuyDs0bmyWIBYPOMVMoiuGSAhXfRIdAthEymW"
    "iVToNS1kWvCZ1EDbDraFOlLkIsrIoW6cKuqdnubQRUCVqYx433pthJdshSmmjgKe19NHVa"
    "L+aiqpGxJxyTYMWLlXRQQ9zFOOuO8a+ujam2fpzV5538YQZprINovgG3A0Ed2SLJsAYINg"
    "E56oAMABx0YAu7q4nvieneTA9+wkE1/WFVMRABdgIeIU/XwJPZayJBmKIsIZw1p2WQ+8i3"
    "0UbfiC8piqK1cq1kA/G14L01n/+obdbmma31WOX38msJ4eb13FWt+cxabJHwR9Gc4+IfYv"
    "+jYeCRxezbQWBr9jQDf71mHPhG1LE6n2LGI5ZEx4rR5qkVm3dXnDWY9ytrNel1n3MApNu/"
    "v0wazreLUk1BKLWb5RrgYuWieHOZTqyWGmUmVdKa5gAvck6B80gygL+pmsOPRDeEhMpTQv"
    "3PXmboKR9gzyF0+svNZAUxn42XfPYtIGCMD3Jty17UxA/ifDARi5u/GyhzJZ6prFjGOYsU"
    "6Ksx2j6K7zuZWAVnx0ifP43lhVifGbCW7xCt1rBtIoQZrORAFozrkPfa8Y4CQbLGxnWkB6"
    "DxNDDB3mBxxpKkOPCXOb6oyXO3qKd/5nx5RgQNbLvvVf23jr6/zHVG2V4ju6Mlhfd/0VHc"
    "dsD96fs9xejsfQwPXi6CzPggFUmSsG74va4a4KyIuvS95AdEuMSAXohnRUEZRjbA1Eu3yH"
    "EtS/ZhsSKWhlxtgaCHU5ZmbEd9eWOjOO0pZGTVMJphmee5gvhvQdMFYFtd9SnX2ZuuSNx1"
    "cRD+1iGFsAR7fXFwKobI49EClWVkC1jZY0zG/OipbUJLM3Zon4Toqr4XSs9TAk27S0JTFE"
    "zaf9mYORPdttoq0e2j/bRneqNYpAHXA0Du7yExH+r6mYOMfYqrJrdod0BSkJD7KiBUMJxg"
    "Zakb3DPIoEqLLdo8OkIekBR5ZYUTeC3OdsnoT3TvOIOFCt8UhThLxNzVebmrc0C6fI8rqg"
    "oc/S1pxsXHOyriJCAIsjkenYeXVEh9vSU37ngxthdDkcfewUm5OOy3aO3Is5vekPL+Ff+M"
    "uuJ7Nh/+rqqzgRPtyOLgXeE2+b06A3aBv0RwPh6oo1+pfxyH0uLZZLia3RYQkVdqeoKtyf"
    "OVLga6VM+b+n41H6Dy2FNe4SK5KF/odUxczz06tZ0cYapBkmEbfXQ/jNdf+/cfAHV+OLuD"
    "/LBrhI/OY06VEEAkszCkeDksxtSKhASOiJGKaSVqGUXWkdcDSm1rp3dPLu5P3x2Ym/tvgt"
    "65aUfY+wvapR2qwAW1uO1ORZzypHKhBWDcQDTAWSYl5cuGwfPk+IygsUUmQgHC69gnH2UA"
    "SySmfSaru2hKl59UUvlUfnuVRlReg9kcuO0vPgvKh6dKVG6P/s+KF/+O0qfIitKm5+lXKb"
    "Lc2Z7CC9Pw35oQ2zNCkuUZrJaD7aRaJoLnkDA2jlh+J3u2W3VuBWEnj/bmNqKVZKFDhTHY"
    "RZWnWQog7ge1mibihSwQ3QUb4mQfvKEWDHoimWJg3zNFB5VL7FwLfzttxg4JeV7BncebcX"
    "hOWsVpsLPM8rxZEIOWXZbkRoj0lb5dPgKp+2DOW1bN/21IL21IK62A+veGpBTXP07iJYep"
    "Z+Mh4I06nT6F+zTPx/bodgE4j9wWw4HrGEfKRhTvu3s0/jyfAbS8wH13M6GF/fXAkznq/3"
    "Luf0Q3/IU/jOZ3pWf5s6gc4GQlV+RYC3eXMJ1oOWsT79XL6So9T5F90ZTITL4Uwc9CdsMo"
    "N/5vRSuPA7gms2zV9v+ldsatnnnF70R5/F2aQ/mn4QJuco8i8I2g0IkQi0IGfe5Zx+HI8/"
    "es3BNROs6SdxPBIvhavhH8LkK5OvaEs9REXCumUbZEtRSY5Sa1EBPTG+7s+GA64ynMs5ve"
    "6Pbpk4OJ+bTM9Rnmrno+xq56NEtbN7DFeRJTjEUudJqE1BuYuXCLekJrhr8HgFjfrsESo6"
    "+aYR55SFdJCqsHXGJJJBCu0LTTA276SharbhYkVl6lrS5EJphThf8+Au3331MFsS08SLje"
    "AOsTYP8dNc+ZzTNfmc02Q+py2JrUtJrMQisnewMBYLk0W4mif0FWyLY4ip2LROCuPsczUP"
    "5zzaPFuZpzhLABf5oYtLjcL4CaAz45FJxo3iknXDuuyaYw+lFcEpSbSfo+vxteAmwQXXHL"
    "NsRpG1MMyz1SK4Wazxn/c25d4UurMV1VKoecBu+6+C4cYar408alLwRK0wV2P2LbxyasMg"
    "IFpyUeTDXC3y2yAv6oTK7OE2wD/M287CZrPQbpYq13BpN0s1a9tMns1SuqFJxDQ3mvY4bw"
    "kTXzPzdU8mOmV/VHKm/XPaNvmBx3jbma7zTLcbIJumyVOmPbFnry2Ubguld6Q1qy2UDuB2"
    "3yy25bbU0EvMGgJ3RA+Qp9J27gpPDdu+m/ThtwRqwgdpEkSvsC3BEavsvQm+2P10g4JInv"
    "JuU+jMHgjCtqxYiH1h9RzB6IQFwpBC+asIQoUvSLvnTdIDpgsYi8J9DORaR8lXHZQ39JzO"
    "KRtNAVaT0/Fv+JuJwARfKtbvXJPCwN4+XvTGJIR3YhDmA9G5s4OL+bY7p+wlCmwc077z4U"
    "CSbZiaUcU7D8t4i0L9t2nU4jUKHMECxp5H30BDr4KCF0NbittVtseGqHFeui1lr7g+Gby2"
    "7WQpMkArSb+uJDnvtdhUjALuOi8Cnf7NkG1PGM7pF+Hi03j8+Ry5F3P6sT8TvvB9Cs4FiM"
    "nl9RDEh3/M6fTrdCZcnyPnc5NJK7/+vWjFQlut4OETib2VUq2wV0muNjZaUparfVdl+67K"
    "mkVauvvzrsobQ5NtKT1k43Z110ZrQkQ7OU5il4d61ehAibLc5DWvjWmP+Kr0iK8NTqJqD6"
    "FqD5HYh0MkNOkxCW+mVPv0TZLqrUr5EmbYbmwFNyOWYioEubJsS8EIaNpzp5p77lR7GlK7"
    "kDV0ITMINtNq0te9rNjjqHFgf0NwK9kXvYcHTjlrX9nnTU1vBwNB4FkK/zKeCKlHBNw7XM"
    "Td/LLZySQR5ub9Vio9JKO4WkpyNg/yStRTm2LIRr+5KYZ2e8Wvsr2iTSa1yaQ2mbRxgOgL"
    "uXvQtMfMIuBIf3ddsOjZoSxSBAyjGiuEJYnoMOfIHaGLNJCXc14n68w0euManV2nABeAfI"
    "tkItsg1MggMEnETNYBlz566luYQkcjetzbvYepjJrdPXkV045LdtuDMCs/Qsr/SRTAOMzT"
    "QJArcSzb6vMgXJLLizxa40UepWR6d2Vl1vng1rIyE6EdnLYF3lchSQ6xNFGYz/LIctz/Co"
    "nyWYokqxpOEePsAtgQS1sDG/GLy6iBNYhElKeNIhUx1jZEVZfIRVaIqiZVAVNlaatMCMDR"
    "yPD74iTdda6f6RGLSkDdVgzs+7q85k1Vuz1dvc7gV2J+GuSesKx/IcsowtS8t4KVb33uz8"
    "ag3eQGSjN/6rYMTojOLYzsVdChyLkIGj5xrmMQ7hXDtBCm5jMxkKXBFVJkstQ1i9X5oEey"
    "6qIFmHkU4QVmRxgACY9LrtLPPthyvC1WXxi6iIJyyRu3BJQY4clegltl9Wspqz4xFOkhTU"
    "m5PWuVEw5oamOX/ypZji2PhM1WAZkn7mar3Owjd5sQLasktM5+VAUQdskbiG4lng3c0Uot"
    "I8heyUIs7WK2T4vZy/8BfRSroA=="
)
