from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    # Event ids the insert gives (SQLite has one writer: they are commit-ordered), in
    # a table rebuilt for it (a BIGINT key is no rowid); older events keep their ids,
    # so their cursors still work. Their snapshots stay NULL: a replay derives the
    # best state it can (models/snapshots.as_of).
    return """
        CREATE TABLE "payment_event_new" (
            "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
            "type" VARCHAR(64) NOT NULL,
            "from_status" VARCHAR(24),
            "to_status" VARCHAR(24),
            "source" VARCHAR(12) NOT NULL,
            "data" JSON NOT NULL,
            "xid" BIGINT NOT NULL DEFAULT 0,
            "snapshot" JSON,
            "created_at" TIMESTAMP NOT NULL,
            "payment_id" VARCHAR(40) NOT NULL REFERENCES "payment" ("id") ON DELETE RESTRICT
        );
        INSERT INTO "payment_event_new"
            ("id", "type", "from_status", "to_status", "source", "data", "created_at", "payment_id")
            SELECT "id", "type", "from_status", "to_status", "source", "data", "created_at",
                "payment_id" FROM "payment_event";
        DROP TABLE "payment_event";
        ALTER TABLE "payment_event_new" RENAME TO "payment_event";
        CREATE INDEX "idx_payment_eve_xid_b139d2" ON "payment_event" ("xid", "id");
        DELETE FROM "counter" WHERE "name" = 'event';"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        INSERT INTO "counter" ("name", "value")
            SELECT 'event', COALESCE(MAX("id"), 0) FROM "payment_event";
        CREATE TABLE "payment_event_old" (
            "id" BIGINT NOT NULL PRIMARY KEY,
            "type" VARCHAR(64) NOT NULL,
            "from_status" VARCHAR(24),
            "to_status" VARCHAR(24),
            "source" VARCHAR(12) NOT NULL,
            "data" JSON NOT NULL,
            "created_at" TIMESTAMP NOT NULL,
            "payment_id" VARCHAR(40) NOT NULL REFERENCES "payment" ("id") ON DELETE RESTRICT
        );
        INSERT INTO "payment_event_old"
            ("id", "type", "from_status", "to_status", "source", "data", "created_at", "payment_id")
            SELECT "id", "type", "from_status", "to_status", "source", "data", "created_at",
                "payment_id" FROM "payment_event";
        DROP TABLE "payment_event";
        ALTER TABLE "payment_event_old" RENAME TO "payment_event";"""


MODELS_STATE = (
    "eJztXW1T2zoW/iuafLl0JssWSmmX3dmZAGmbLSRsSG+3t7njFbYSPDiSry0Dmbv973vkt/"
    "g12IkNjuov4Eg6ivPo+Ejn1X92Fkwjhr1/xhzKidU5QX92KF4QuEh2dVEHm+aqQzRwfGO4"
    "Y9XIoBubW1jl0DzDhk2gSSO2aukm1xkVg4fwBRqizuKGWPYJ4rcEMUsjlt+EbPKHQ6gKlP"
    "xWt5FObY4NAwvyX+Cjti++RmMqfI9O55XN6FAdRimczQlMILD4/js061Qjj8QOPpp3ykwn"
    "hhaDyv0PnW6Pwpem23p2i60P7lhxvzeKygxnQaPjzSW/ZTQkgB8kWueEEgtzokUgpA7crw"
    "d20OTdLzRwyyHhjWqrBo3MsGOIhRDU3j2s2jqKMhxNlOv+RFE6qUUKKCIo+00qo2KBdcpt"
    "F4MFflQMQuf8Fj6+Ofzhfc8KCW+U+MJfe+OzT73x3pvDV+ILGXCJxz1Dv+fQ7frhToE59i"
    "ZxkV9BfY8NJwPrU30+oDwb7ZAkATf8hE3gDhpWeK/4PAD3dV1oz8Ud/OVvh4dv3rw7fP3m"
    "+P3bo3fv3r5//R7Gureb7nq3ZklOBx8Hw0l8NUTDjx+C12d3kSUQDTdYvXvAlqaketghyx"
    "ub7locLpItmOK5i6X43eKGfelzrtumw0mWYAq61gomLTLoScHUQyo8snMibt0VInNgiwe8"
    "RBYxmQUc0kV3xOQIg8zgNgIBQmyOQJZwkpZJ2062hTjStTLCyBstnSg6fPu2gCyCUbnCyO"
    "1bL43wQmx85cTRiub55FGdqD+bSOpGWFx1LAt29GUZRo/SVMPuLw19fO8tsvXm77yvEggL"
    "SeTYZfBdUciIbkUnmxXAFsE23FEJgFcUGwHsy+Jm4nt8VADf46NcfEVXQkQAXICFgjPk8z"
    "n0cH1BcgRFjDKBteaT7gcXu8ja8AO1ETWWPlesgX4yuOxfT3qXV+LrFrb9h+Hi15v0Rc+h"
    "27pMtO4dJ5YpnAR9HUw+IfER/TYa9l14mc3nlvuNq3GT3zrinrDDmULZg4K1yGEiaA1Qi6"
    "26Y2obrnqcsl31pqx6gFFk2f27X626iZcLQrlS7uQbp5Jw0zp6XUCoHr3OFaqiK0MVTOGe"
    "Bv0Ds4g+p5/J0oV+ICwuVM3Swn1t7mo1045B/iNgq6B1Jaks/BCqZwluAwTgdxNXte2Mgf"
    "/HgzM45L6Mlj3QyMJkXByOYcU6Gcp2YkR3nc6tr8Yqd/7gIro3Ngxi/WKDWrxEM2YhRgli"
    "pmAFGONZ9Wa6BUqyJcx5NoehM1gYYpmwPqBIUw16bFjbTGW82tkztPPvHVuFCUWv+NW/b6"
    "Otr9MfM6VVhu7o82Bz1fVnVBzzNfhwzQprOQGBhPvFwXGRDQNG5e4Ybl/8HO6LgKL4+sMl"
    "RLdCi9QK3YiMKoNygkxCtKtXKEH8M8dSSclTZoJMQqirOWbGdHe2MMXhKGtrZMwgmOZo7l"
    "G6BNI3QFgX1GFLfefLzC1vNLqIaWing8QGOPxyedoHke1iD4N0nmdQba0lkunNedaShnj2"
    "hozrM13F/mqkNI5Y/1p9gyZHPqlsTESAgMNv2OOJqwfAlPo9sZaIM7TAdwTtYaQ6NmcLV2"
    "UgC6wDX2AEH9VbTIVu8EBubhm7e9VN6RpVTj6lD5bOQZVCOnVVFPhh1IbfBj8EsZnbJIjm"
    "BOkccWIYNjR3XW3F/16iIcwRiExQbRio4FN6s3TphGsUcxW0F7TnofrXVdO+uXzVRQ+3un"
    "oLao/KLA3u1P0VGG5nYXIEg1pHZZN2z3wdR3AIJUYpX9mKRMIDy8FxITVnjZaTPLDAs1Ha"
    "/BilqQvk3WfrJMYuRKVRDqgkZObqFZ0mW9OlYmiqmUwvLzfiZDX5gmUCGk4wuqlnOirW6e"
    "0RIgnlxuHro/dF7FEwLN8g5XampIfBcAZH/+t6NMwVHQFJUn/UVY7+hwzdrs011PnHzKHe"
    "ifrG0Q2uU3tffO0/OzUtwxrQBUQx1TGAeu+y95/kKpxdjE6TOqGY4HQHInlS0qVjglgTqO"
    "3oAdBXizJgzg8EjJBIE5p8eHD07uj9m+Oj0IsTtqxz3qQNUpQ8csWHaAOrVAb585imnnPf"
    "3BFLVEYERzpwZ67fE8UxN1jqOKWEBkiZllk1sL4oZYkICOSLeaw+ptQFi2iKQ7meYe95wp"
    "CfJK7gUWoY/jI9SQa2uUIsi1llHqc4lXzP1NvXRbRHGJX7VLl9Sf0xMOIrbFZOh0wQygd4"
    "Dc7f1hX5k7gio6seuqs2WPckbbtxNW3jaojTeSSywjsZ3mavo7s2x9332SosHPuUozl/eV"
    "unaTN2nXynqVc6oAzUKwrp4K5BUwmepnLsnCCTz8tUQx5cAFnZKhUpQimdIEUEyeEadeEw"
    "rS6EwLmxPRtBHlLKx+GHb4uwOIxaEwadweRtPni9+eCccZzBy+syVUKSttBByXyVYs67Pp"
    "w4Uul1L56S33HP0tfuN+9f9Yfng+HHkl69jk92gvyLKb3qDc7hI/wV1+PJoHdx8U0Z9z98"
    "GZ733Z5k25SueldtZ73hWf/iQjSGl51NpFghIbZGhqVE2I1uGPD9QpMCZStjyfP95xmkW/"
    "nRd0f5rclhztQ7BQZwZpVOQUgTt3kIJfIQ7oll61llMfLLe60oWi/6bqd1POuhVF5TalsD"
    "Q7ZVz7CrundfwqwacRzqlGQcL059sg+fx8QIk2myqzW4R7wLmGcHWSCvXkNWCPSWMMlX1O"
    "JH7dZ5l6vyLPQBy+Vb6V3jvGIE4yq10H/vhKZ/eHZ1d4qtyjz8LDUetjzO5Bvpw2UoDm2U"
    "RCa7RGVHRvvOKWNF84dLaECr3hT/snWiGwVuLYb3PxxMuc4zrMC54iBK0oqDDHEAv4srpq"
    "WrJatux+lkgvaZLcDeiaacmzRKI6HwqL2uXXjOiwNeuqpdGFayY3DnHf+7iZp2UT5rVEW7"
    "QPPKUCQiSlm+GhEpbNhG+Ugc5dOGoTzX2bctld+Wym/K+eEZS+U31Efvb4KVe+nHo7P+9b"
    "XXGF4LT/y/vwzgTKD0ziaD0VA45GMNU9r7Mvk0Gg9+E4751fWUno0ury76E9dfH1xO6Yfe"
    "wHXhe/+zvfrbxAl0NmCq6iMCgooaCzg9sJz96Wn+Ss/S5Ce6czbunw8myllvLBZz9WFKz/"
    "unYcfqWizzt6vehVha8X9KT3vDz8pk3Btef+iPT1DsIzDaFTCRAmOBz4LLKf04Gn0MmlfX"
    "grGuPymjoXLevxj82h9/E/wVb2kGq6jY5I5FtmSV9CyNZhWQE6PL3mRw5ooM73JKL3vDL4"
    "IdvP+bLM9BkWjng/xo54NUtLP/7qcyW3CEpMmL0JiAch8vJVIhr+ShPn8G6Urs1FKKWDVE"
    "tRzFJqpFSlXaSRHKlyVZC+AW0XSLqFxxrFJR5kk6CeGuqbbRDOuG2CBVppVy5CTp5EO8eo"
    "NBgNmC2DaebwR3hFQ+xGvJdG+DkJsShKwKG/gNHEXKGSZjVPIxfQ2JiAIxURXjqDTOIZV8"
    "OBeR5vnCPEM9BbjIo6ksGIX5U0DnWoDThBtZgpuGddVR3gFKS4Iz3JZPoxvQteCmwV0Qjo"
    "X/qMxeGKVpK1pWvzd6CqNubqBlekTSafRHRfTLo3z18iitznvGwJJvJ4tSSZOO88weO4vA"
    "86uVRT5K1SK/DfJKpBZtWfyjtO0qbLYKbQ5gtafDNgdQrmywIjmApsVUYtsbLXuSti2n1p"
    "y0v/RKh++82+QBT9C2K93klW7zemWT5BnLnkpFbeP/2/j/F5Ka9cb/R2q/6rbp8G2T0s+9"
    "WSSCOyYH3BeZVZOQ3r+XLCs9rcNvCdTYnUQmiJ4h28Zjq/yUm5Dtnsy7Uch90ewb932r2N"
    "HE+0/hBxsnCGYnwhD25DtTu4iKd5oi/3Tkvs009SrXaqae0ikdcBsF2efBBAabI91Ge4+6"
    "1kW69uoE2YQg/3Ws3qsLYci+udxH/7UpNu1bxv8rKIB4Sn20EBafodF/FaxBZly8DzZ4rW"
    "tAaIu3uv4deYIEzSy2QDdkBnsaCkdM6S2+J4gyWvTlrt87j578h7+/l0pnWmdMk6wAwrMY"
    "0PKznFwASxwfg/ESHh1riFOC50jZLgUkMUWDwwnanI+aA/lBD9yOl2ITtJz083KSzRwrq2"
    "hDway0kLrJm0CndzUQeTyDKf3aP/00Gn0+Qf7FlH7sTfpf3YQe7wLY5PxyAOzj/pvS62/X"
    "k/7lCfL+b7Jo1SeKlA00aYNMAnxi1rwqgkwey55ZH4seWnfEAfncla59HaQM+0dp2mDjLQ"
    "KqdspF3HoWnvYsFPIR+8aWcr6FOFWTTwdN9S5Eists6V+Qr8BoN+FhiHNbs2oMWUxz1GyD"
    "p9/VXWvrjAx6kRpDL1npsUFVhqoyCa15l1hb97HWuo8blCdsKxO2lYV2obIQU+/S8OZydT"
    "heJq7eKhA2dQx7mbOC70/OOCqsPM35JwVrNaYtRihvMcK2RF67kUm6kVkE21kZHeuKlAQU"
    "DXZibQhuLaUbdrAKobf3VV2E8PrL2Vm/73rkwsuk068Z3p6g4pSfOrZZuaoYsXzPSi2Vk4"
    "ICMeXFUppSPshrEU+tiyEffXldDG1y0s+SnNQ6k1pnUutM2thA9JXc3DJ216eayfTsKPrk"
    "kO46k9GDN1gh0dFPxtL30IJYIoqc/2Ije2lzskD8FnP0gEXIuA38RLQggHzP25gTt/VqH5"
    "0LVP0aCLF4+mqnn4oodcQdi9oi2p3NZghTDd0RYooGGwEo+j2xdGL/gm518ULmZcGg9tYS"
    "9rKWsJIFTbepY9o0WfY8hUy91BJvshTQ+fFWCbJmRB2K75Mm6rB89eQtyyY3m/8PCqmiB2"
    "tU0YO0Khq9sxJAJ8jk0/tr8c2L7Lj7LOc8YwbBNMerERIlUL4BqmqYOrV9Bg3PK0ROR6OL"
    "mBA5HSTcFcMvl6d94HEXdBik8zwvRmth+QktLJ4Ks8mqxylb60rTrCsNCV0IFLC85O5Yf7"
    "eQTlo8uRtmtZYIqyoxge2QP0MXMaqSEzeD2uM2tOe7Q7qe+ggq/ivQ/zQHVh3B8Ugogen8"
    "7spnz3xpfORNLgH1dq+NbxOnqw0EyNdD2/f21F5/PXwkSmAcpZEQ5Fpcnm0NgHqVyhfzfz"
    "S6KnVFlsJIZS6Hq6xcNH2EREZmPi7Cy8mza4SVjzM42WA4g43z7YIRkmbYBKXKRLaISvT7"
    "jXS8BGmr2jdF68tT7Rui9F3rC8cQTACKRo7elxzSXaf62cFgRV+NbmPZd31fztecXvhlkE"
    "0Gv5bjp0VmRMSjlzoZxYjqOhvtPpfvYnmWl7GrVnb8ado2OCame8LI3wW9EQU3QSscXKi8"
    "5Uy3bI4wtR+IhTiDK6RrZGEyLjJQ0B1ZdtEcjnkU4TkWlSVhiGuXXGbXtNxyvi12X5i6jI"
    "Dyh0u3BVRo4cnfglth9XMJqx6xdPU2S0j5PWuFE16Nacy5/Gfxcmz5qp98EZD7JqV8kZv/"
    "KiUZrGW1mNbFQ1UCYX+4hOjWotnAN/LMAPf8nSxC0m5mu7SZ/fg/LBccjQ=="
)
