from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "notification" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "channel" VARCHAR(16) NOT NULL,
    "event_id" VARCHAR(40) NOT NULL,
    "event_type" VARCHAR(64) NOT NULL,
    "payment_id" VARCHAR(40) NOT NULL,
    "endpoint_id" VARCHAR(40),
    "recipient" VARCHAR(2048) NOT NULL,
    "payload" JSONB NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "attempts" INT NOT NULL,
    "next_attempt_at" TIMESTAMPTZ NOT NULL,
    "give_up_at" TIMESTAMPTZ NOT NULL,
    "claim" VARCHAR(32),
    "claimed_until" TIMESTAMPTZ,
    "last_error" VARCHAR(500),
    "redelivery_of" VARCHAR(40),
    "created_at" TIMESTAMPTZ NOT NULL,
    "delivered_at" TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS "idx_notificatio_event_i_6a5770" ON "notification" ("event_id");
CREATE INDEX IF NOT EXISTS "idx_notificatio_payment_22eeb3" ON "notification" ("payment_id");
CREATE INDEX IF NOT EXISTS "idx_notificatio_endpoin_73dd94" ON "notification" ("endpoint_id");
CREATE INDEX IF NOT EXISTS "idx_notificatio_status_e94356" ON "notification" ("status");
CREATE INDEX IF NOT EXISTS "idx_notificatio_next_at_84a463" ON "notification" ("next_attempt_at");
COMMENT ON TABLE "notification" IS 'The outbox: one delivery to make (a customer''s email, a merchant''s webhook),';
        CREATE TABLE IF NOT EXISTS "webhook_endpoint" (
    "id" VARCHAR(40) NOT NULL PRIMARY KEY,
    "url" VARCHAR(2048) NOT NULL,
    "event_types" JSONB NOT NULL,
    "secret" VARCHAR(100) NOT NULL,
    "description" VARCHAR(200),
    "active" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "deleted_at" TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS "idx_webhook_end_active_297b24" ON "webhook_endpoint" ("active");
COMMENT ON TABLE "webhook_endpoint" IS 'A merchant''s system that wants signed events (createWebhookEndpoint). Deleting';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP TABLE IF EXISTS "notification";
        DROP TABLE IF EXISTS "webhook_endpoint";"""


MODELS_STATE = (
    "eJztXW1v2zgS/iuEv2wK+HJNmqa94HCA47itr4mdc9ztddcLQZFoR4hMaiUqqbHX/35D6v"
    "3NsWwpkVl9SWSSQ0kPR0PODGf4V2dJdWw6h33qEobtzhn6q0PUJYaLdFUXdVTLiip4AVNv"
    "TdFWizW6dZitagyK56rpYCjSsaPZhsUMSnjjEdxARz6J00X4cHGI2B1G1NaxjYi7vIV/Dv"
    "7TxUTDh7xTnWrQq0EWW9K7xIBfCqMLDA35e/7+BxQbRMffsRP8tO6VuYFNPQGD+A+VokZh"
    "K0uU9u9U+4Noy5/uVtGo6S5JvL21YneUhATw+Lx0gQm2VYb1GDzENU0fyKDIe14oYLaLww"
    "fVowIdz1XX5CBzau8ZorKOoozGU+VmMFWUTmYAAooYpn6RRgkfPIMwR2CwVL8rJiYLdgc/"
    "3xz/8O4TIeG14jf8tTfpf+pNDt4cv+I3pMABHmeM/JpjUfVDdKEy1etEIB9B/aCabg7W58"
    "ZiSFg+2iFJCm54hW3gDgoivCMeDsB9XRfaC/4Ef/vH8fGbN++OX785ff/25N27t+9fv4e2"
    "4nGzVe/WDMn58ONwNE2OBi/48YPz+vw+NgS84FbV7h9VW1cyNfSYFrXNVi2Pl+kSlagLgS"
    "V/b/7AvmS5MBzLZThP6ARVa4WOHmv0pNDpIQ0+2QXmjy6ExQLY4lFdIRtb1AYO6aJ7bDGk"
    "OshgDjKh1mHIYfA/K4F27WwHcWToZYSR11o6UXT89u0GsghaFQojUbdeGqlLPsOUE0cRzf"
    "PJozpRfzaR1I2xuObaNszcqzKMHqepht1fGvrk3LvJ1Fs8875KIcwlkeuUwTeikBHdilY2"
    "EcA2Vh14ohIARxRbAezL4mbie3qyAb6nJ4X48qqUiAC4AAtFzZHPF1DDjCUuEBQJyhTWuk"
    "96GFzsI2vDC+pjYq58rlgD/XR4NbiZ9q6u+e2WjvOnKfDrTQe85liUrlKlB6epYQo7QV+H"
    "00+I/0S/jUcDAS912MIWd4zaTX/r8GdSXUYVQh8VVY8tJoLSALXEqLuWvuWoJynbUW/KqA"
    "cYxYbdf/po1C11tcSEKeVWvkkqCSetk9cbCNWT14VClVflqIIZ3LOgf6A2NhbkM14J6Ifw"
    "kCrR8rRwX5u7jnraM8h/BGwVlEaSylYfQ/UsxW2AALw3FqptZwL8Pxn2YZH7Mlr2UMdLiz"
    "K+OIYR6+Qo26kW3XU6txG1Ve79xpvo3qppYvsXB9TiFZpTG1GCEbU4K0CbM6FDzw0blGSb"
    "m+0cBk3nMDDYtmB8QJEmOtQ4MLa5yni1vedo5793HA065LX8rf/YRVtfpz/mSqsc3dHnwe"
    "aq68+oOBZr8OGYbazlBAQSzhdHp5tMGNCqcMYQdcl1uC8CNsXXby4huhVapCJ0YzKqDMop"
    "MgnRrl6hBPFPXVvDJVeZKTIJoa5mmZnQ3enS4oujvKmRUhOrpEBzj9OlkL4FwrqgDkvqW1"
    "/mTnnj8WVCQzsfpibA0Zer8wGIbIE9NDJYkUG1tZZIpjcXWUsa4tkbUWbMDU31RyOjcSTq"
    "1+obJN3ySWVjyjcCuOyWfj8TegB0aTxge4UYRUv1HqMDFWmuw+hSqAx4qRrAFyqCn9qdSr"
    "hu8Ihv7yi9f9XN6BpVdj4jj7bBQJVCBhEqCrwYceDd4EUQnYsiTrTAyGCIYdN0oLgrtBX/"
    "vlhHKkMgMkG1oaCCz8jtStBx16jKNNBe0IGH6t+jokNr9aqLHu8M7Q7UHo3aOjypeAsVHm"
    "dpMQSNWkdlk2bPYh2HcwjBZilfWUQi4YLl6HQjNWeNlpNesMC3Udr8GKepC+T9Z+s0xgKi"
    "0igHVBIyc/WKTpOt6VIxNNEtapSXG0mymnzBMgENKxjDMnIdFev09hiRhHLj+PXJ+03sUd"
    "Cs2CAlKjPSw6RqDkf/+2Y8KhQdAUlafzQ0hv6HTMOpzTXU+efcJd6K+tY1TGYQ55Df9l+d"
    "moZhDegcooTqGEB9cNX7b3oU+pfj87ROyDs434OdPBnp0rFArHHU9nQB6KtFOTAXbwSMkU"
    "izNfn46OTdyfs3pyehFycsWee8yRqkCP7OFB+iLaxSOeTPY5p6znlzTyxROTs4sht3FsYD"
    "Vlxri6FOUkpogJRpmDVTNZalLBEBgXx7HqvfUyrAwrriEmbk2HueMOSniSv4lBqGv0xfkq"
    "k6TMG2Te0yn1OSSr5v6u3rTbRHaFX4VYm6tP4YGPEVOi+nQ6YI5QO8Budv64r8SVyR8VEP"
    "3VVbjHuatp24mjZxNcTpPObR350cb7NX0V0bv+77bBUatn3K0Vw8vK3TtBmzTrHT1EsRUA"
    "bqiEI6uGvQVIKvqRw7p8jk8zLVEAcXQFY2S0WGUEonyCaC5HiNunCcVRdC4MTenq0gDynl"
    "4/Djt5uwOLRasw06h8nbePB648EZZWoOL6+LVAlJ2kQHJeNVNnPeDWDFkQmve/GQ/I5YS9"
    "+IOx9eD0YXw9HHkl69jk92hvyLGbnuDS/gJ/zl15PpsHd5+U2ZDD58GV0MRE26bEai2qis"
    "3xv1B5eXvDC87GwjxTYSYmtkWEaE3RqmCffnmhQoWzlDXuw/zyHdyY++P8pvTQ5zqt0r0I"
    "BRu3QIQpa4jUMoEYfwgG3HyEuLUZzeK6Jovej7HdbxrItSeU2pbQ4M2UY9x64qnr6EWTXm"
    "ODQIzllenPtkHz5PsBkG0+RnaxBLvEvoZw9ZoChfQ94W6B1hki+pxY/arfOCq4os9AHLFV"
    "vphXFeMYN2lVrof++Epn/4dg3RxU5pHn6WHA87LmeKjfThMGwObZxEJrtEZUtG594tY0Xz"
    "m0toQKveFP+yeaIbBW4thvc/XZUwg+VYgQvFQZykFQc54gDeiymWbWgls24n6WSC9pktwN"
    "6KppybNE4jofCoPa9duM5LAl46q124rWTP4C5a/ndTOe3ifNaojHaB5pWjSMSUsmI1IpbY"
    "sN3lI/Eun3YbynOtfdtU+W2q/KasH54xVX5DffT+JFi5l34y7g9ubrzC8Jp74v/zZQhrAq"
    "XXnw7HI+6QTxTMSO/L9NN4MvyNO+aj6xnpj6+uLwdT4a8PLmfkQ28oXPje/3yv/i77BDpb"
    "MFX1OwKCjBpLWD3Qgvnpaf7K9tLkL7rTnwwuhlOl35vwwYx+zMjF4DysiK75MH+77l3yoe"
    "X/Z+S8N/qsTCe90c2HweQMJX4Co10DEynQFvgsuJyRj+Pxx6A4uuaMdfNJGY+Ui8Hl8NfB"
    "5Bvnr2RJM1hFUy3m2nhHVsn20mhWATkxvupNh30hMrzLGbnqjb5wdvD+bzM8R5vsdj4q3u"
    "18lNnt7J/9VGYKjpE0eRAas6Hcx0uJZcgruagv7kG6FDu1pCLWTJ4tR3GwZuNSmXYyhPJF"
    "SdYCuI11w8YaU1y71C7zNJ2EcNeU22iuGiafIDWql3LkpOnkQ7x6g0GA2RI7jrrYCu4YqX"
    "yI1xLp3m5CbsomZI3bwG9hKVLOMJmgko/pawhE5IjxrBgnpXEOqeTDeRNpXizMc9RTgAt/"
    "t5QlJdB/BuhCC3CWcCtLcNOwrnqXd4DSCqs5bsun0Q3oWnCz4C4xU7n/qMxcGKdpM1pWPz"
    "d6CqNhbaFlekTSafQnm+iXJ8Xq5UlWnfeMgSVPJ4tTSROO88weOxvD96uXRT5O1SK/C/JK"
    "LBdtWfzjtO0obDcKbQxgtavDNgZQrmiwTWIALZtq2HG2GvY0bZtOrTlhf9mRDs+82+YDT9"
    "G2I93kkW7jemWT5DnDnglFbff/t/v/X0hq1rv/P5b71XAsl+0alH7h9SIR3Ak5IA4yqyYg"
    "ffAgWVR6VoffEaiJ6EQmiJ4h2sZjq+KQm5Dtnoy7UfDDptE34rxV1dX5+afwwuYZgt4xN4"
    "Q9eWZqFxF+pinyV0fiNNPMUa7VdD0jM8J7M4DUEe3EG/7iIFiCLw32NyFJoeMgPB0dOBiL"
    "ShWY+VDx7uzh4vCDYfkRr7wfx70N4UCaazvUruNY1nWWr02zFTQ/+ugZzV3FMUkCwRKLva"
    "C9hAu9GnYV2XSp7Bawkeqiwc7/NkKj5m33oLXtxkuJDlpO+nk5yaGunZdiYcMYspC6yZNA"
    "p3c95FE3wxn5Ojj/NB5/PkP+xYx87E0HX0X4jXcBbHJxNQT2Ef9m5ObbzXRwdYa8/9sMWv"
    "VhHWW3hbRbQgJ8Era3SraE7JWTq7WNVuTlavBJ5TLbR2PpMXa0kMqXIrGbspEmua1ZWVJs"
    "qrtavsnGr+qutdbEGr1IlpSXzFXXoDwpVanJa05DajPX1Zq5bosEa21utTY3yj7kRqHafR"
    "beQq4O28vE1Ttt5cssw15mreB7xHKWCpGvrHilYEdt2nRq8qZTa5N8tROZpBOZjVUnb0/6"
    "ujQLAUWDDftbgltL8Pke5lHz5r6q06jdfOn3BwPhpQgv046QZljAg5w5fvDLdgl3EsTyfS"
    "u15H4JUlyUF0tZSvkgr0U8tS6GYvTldTG04RU/S3hF60xqnUmtM2lrA9FXfHtH6f2A6BY1"
    "8vcBp5t015mMHr3GCo63fnI3cA8tsc334PK9tc7KYXiJ2J3K0CMUQQnwE9a9zbcOOvAm5t"
    "RjvTpEFxxVP4o7sSO42u5nhBKMmGsTBxkM0fkc8W299xhbvMBBAIrxgG0DO7+gO4MfKbuq"
    "Y3Nvawmr3BJWMiXjLpkYmybLnicVo/jG/M4yQBdvwUqRNWMnFr+fNDuxyud/3THxa7P5/2"
    "gjVfRojSp6lFVF409WAugUmXx6fy2+eR7f85DnnF93DHxEVNvx75npMyjY28PfWwtLMZ/L"
    "a2HxVJhtRj1J2VpXmmZdacjWhUABKwpPTdR3N9JJNw9PhV7tFVI1DVvAdsjvoYso0fCZiO"
    "D0uA0d+O6Qrqc+gor/CvQ/3YVRR7A84kpgNkK18t5zj72OnUURUO928HUV0aR7cvb1CweT"
    "tieP1J5BOvwkSmAcp5EQ5Fpcnm1cdL1K5Yv5PxqdV7ciS2Est5DLNFpuN32MREZmPt2El9"
    "Nr1xgrn+ZwsknVHDYutgvGSJphE5QqOtPGGjYettLxUqStat8Ura9ItW+I0ndjLF2TMwEo"
    "GgV6X7pJd53q5wSNFSNq3e5l3/d5ec3R4C97nF2Twa9l+WnjOeb70UutjBJE8h3DXv3qc3"
    "9SVryMXbWy5U/TpsEJtsQKo3gW9FpsOAnaYeONEvTNDdthSCXOI7YRo3CFDB0vLcp4BAq6"
    "x6suWsAyjyB1ofLketBE2CVX+Vn5duxvh9kXui4joPzm0k0BFVp4iqfgVlj9XMKqh21Du8"
    "sTUn7NWuGkRm0asy7/WbwcOx5WUiwCCs+CKRa5xYfByGAtq8W0zj+qEgj7zSVEtxbNBu7I"
    "cje4F89kMZJ2MtunyezH/wFlMgpD"
)
