#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/.

Seeds follow each target's input format (see the doc comment at the top of each target):
DingTalk's published callback-crypto vectors (docs/dingtalk-api.md §8), sample requests of every
route, and sample DingTalk answers. Run from fuzz/: python3 seeds/make_seeds.py
"""
import hashlib, json, os

def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

# ---- event_crypto: published vectors (token, key, owner, timestamp, nonce, encrypt, signature, msg)
VECTORS = [
    ("mryue", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7", "ding6ccabc44d2c8d38b", "1608001896814", "WL4PK6yA",
     "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3",
     "03044561471240d4a14bb09372dfcfd4fd0e40cb", '{"EventType":"check_url"}'),
    ("tokenxxxx", "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus", "dingxxxxxx", "1605695694141", "WelUQl6bCqcBa2fM",
     "X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
     "f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc", "success"),
    ("123456", "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij", "suite4xxxxxxxxxxxxxxx", "1445827045067", "nEXhMP4r",
     "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
     "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
     '{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}'),
    ("123456", "1234567890123456789012345678901234567890123", "dingsnotzck6pm5veliw", "1614767836", "A7Co0cJLMzIDtMMI",
     "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
     "9a95a004dd16f5c307e849b994173f76aa26e5eb", "success"),
]
for i, v in enumerate(VECTORS):
    put("event_crypto", f"published-v{i+1}", "\n".join(v))
    put("event_crypto", f"published-key-ref-v{i+1}", "\n".join([v[0], f"#{i}"] + list(v[2:])))
put("event_crypto", "bad-key", "t\nshort\no\n1\nn\n!!!!\nzz\nmsg")

# ---- event_json: plaintexts of contact events (both shapes) and odd ones
EVENTS = [
    {"EventType": "check_url"},
    {"EventType": "user_add_org", "UserId": ["u1", "u2"], "CorpId": "dingcorp123", "TimeStamp": "1700000000000"},
    {"EventType": "user_modify_org", "UserId": ["u1"], "CorpId": "dingcorp123", "TimeStamp": 1700000000000,
     "DiffInfo": [{"userid": "u1", "prev": {"name": "a"}, "curr": {"name": "b"}}]},
    {"EventType": "user_leave_org", "UserId": "u1", "CorpId": "dingcorp123", "TimeStamp": "1700000000000"},
    {"EventType": "org_dept_create", "DeptId": [2, "3"], "CorpId": "dingcorp123", "TimeStamp": "1700000000000"},
    {"EventType": "org_dept_remove", "DeptId": [2], "CorpId": "dingcorp123", "TimeStamp": "1700000000000"},
    {"eventType": "user_add_org", "eventId": "e1", "corpId": "dingcorp123", "eventBornTime": 1700000000000,
     "data": {"userId": ["u3"]}},
    {"EventType": "org_admin_add", "UserId": ["u1"], "CorpId": "dingcorp123"},
    {"EventType": "unknown_event", "bizId": "b1"},
]
for i, e in enumerate(EVENTS):
    put("event_json", f"event{i}", json.dumps(e, ensure_ascii=False))
put("event_json", "not-json", "success")

# ---- router: one request of every route (METHOD\nTARGET\nheaders\n\nBODY)
PT = "platform-token-0123456789abcdef0123"
REQS = {
    "r1-inapp-mobile": "GET\n/dingding/dingding_auth_corp?corpId=dingcorp123&code=abc123\n",
    "r1-jsapi-page": "GET\n/dingding/dingding_auth_corp?corpId=dingcorp123\n",
    "r2-inapp-pc": "GET\n/index.php?dingding/dd_client_callback&corpId=dingcorp123&code=abc\n",
    "r3-admin-sso": "GET\n/index.php?dingding/dd_callback&usertype=admin&corpId=dingcorp123&code=abc\n",
    "r4-qr-callback": "GET\n/dingding/dd_or_code_corp_list?authCode=abc&state=00112233445566778899aabbccddeeff0011223344556677\ncookie: dd_login=abc\n",
    "r4-choice": "GET\n/dingding/dd_or_code_corp_list?choice=00112233445566778899aabbccddeeff0011223344556677&corp=dingcorp123\ncookie: dd_login=x\n",
    "r5-qr-start-then-callback": "GET\n/dingding/login?return_to=/forms/1\n===\nGET\n/dingding/dd_or_code_corp_list?state=252a4f7499c3e80d&authCode=x\ncookie: dd_login=252a4f\n",
    "r6-events": "POST\n/dingding/events?msg_signature=f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc&timestamp=1605695694141&nonce=WelUQl6bCqcBa2fM\ncontent-type: application/json\n\n{\"encrypt\":\"X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==\"}",
    "r7-redeem": f"POST\n/dingding/api/tickets/redeem\nauthorization: Bearer {PT}\ncontent-type: application/json\n\n{{\"ticket\":\"00112233445566778899aabbccddeeff0011223344556677\"}}",
    "r7-sync": f"POST\n/dingding/api/sync\nauthorization: Bearer {PT}\n\n{{\"corp_id\":\"\",\"ack\":null,\"restart\":false}}",
    "r7-changes": f"GET\n/dingding/api/changes?after=0&limit=10\nauthorization: Bearer {PT}\n",
    "r7-todos": f"POST\n/dingding/api/todos\nauthorization: Bearer {PT}\n\n{{\"source_id\":\"s1\",\"subject\":\"x\",\"creator_userid\":\"u1\",\"executor_userids\":[\"u2\"],\"detail_path\":\"/f/1\"}}",
    "r7-todo-complete": f"POST\n/dingding/api/todos/s1/complete\nauthorization: Bearer {PT}\n\n{{}}",
    "r7-todo-delete": f"DELETE\n/dingding/api/todos/s1\nauthorization: Bearer {PT}\n",
    "r7-message": f"POST\n/dingding/api/messages\nauthorization: Bearer {PT}\n\n{{\"userids\":[\"u1\"],\"body\":{{\"type\":\"text\",\"content\":\"hi\"}}}}",
    "r7-corps": f"GET\n/dingding/api/corps\nauthorization: Bearer {PT}\n===\nPOST\n/dingding/api/corps\nauthorization: Bearer {PT}\n\n{{\"corp_id\":\"ding2\",\"corp_name\":\"b\",\"agent_id\":\"1\",\"app_key\":\"k2\",\"app_secret\":\"secret-2-xxxxxxxxxx\"}}",
    "r7-unbind": f"DELETE\n/dingding/api/corps/ding2\nauthorization: Bearer {PT}\n",
    "r7-bindings": f"POST\n/dingding/api/bindings\nauthorization: Bearer {PT}\n\n{{\"corp_id\":\"dingcorp123\",\"userid\":\"u1\"}}",
    "r7-validate": f"POST\n/dingding/api/config/validate\nauthorization: Bearer {PT}\n\n{{\"site_url\":\"http://x\"}}",
    "r7-setup": f"GET\n/dingding/api/setup\nauthorization: Bearer {PT}\n",
    "r7-no-auth": "GET\n/dingding/api/corps\n",
    "complete": "HEAD\n/dingding/login/complete\n",
    "typed": "~GET\nhttps://forms.example.com/dingding/dingding_auth_corp?corpid=dingcorp123&code=c#frag\n",
    "405": "PUT\n/dingding/events\n",
    "404": "GET\n/index.php?corpId=x&dingding/dd_callback\n",
}
for k, v in REQS.items():
    put("router", k, v)

# ---- dingtalk_responses: "ENDPOINT NUMBER TOKENS\nTEXT\nSTATUS\nBODY---..."
ANS = {
    "app-token": (0, 0, 0, "", [(200, {"accessToken": "t", "expireIn": 7200})]),
    "corp-token-snake": (6, 0, 0, "dingcorp123", [(200, {"access_token": "t", "expires_in": 7200})]),
    "sso-userinfo": (5, 0, 1, "code1", [(200, {"user_info": {"userid": "u1", "name": "n"}, "corp_info": {"corp_id": "dingcorp123"}, "is_sys": True})]),
    "me": (4, 0, 0, "utok", [(200, {"nick": "n", "unionId": "un1", "openId": "o", "mobile": "138", "stateCode": "86"})]),
    "user-token": (3, 0, 0, "code", [(200, {"accessToken": "ut", "expireIn": 7200, "refreshToken": "r"})]),
    "getuserinfo": (7, 0, 1, "code", [(200, {"errcode": 0, "result": {"userid": "u1", "unionid": "un1", "name": "n", "sys": True, "sys_level": 1}})]),
    "user-get": (8, 0, 1, "u1", [(200, {"errcode": 0, "errmsg": "ok", "result": {"userid": "u1", "unionid": "un1", "name": "张三", "mobile": "138", "email": "a@b.c", "org_email": "x@y.z", "avatar": "https://x/a.png", "dept_id_list": [1, 2], "admin": True, "active": True, "dept_order_list": [{"dept_id": 1, "order": 3}], "leader_in_dept": [{"dept_id": 1, "leader": False}]}, "request_id": "rid"})]),
    "getbyunionid-notmember": (9, 0, 1, "un1", [(200, {"errcode": 60121, "errmsg": "找不到该用户", "request_id": "r"})]),
    "user-list": (10, 1, 1, "", [(200, {"errcode": 0, "result": {"has_more": True, "next_cursor": 100, "list": [{"userid": "u1", "name": "a", "dept_id_list": [1]}, {"userid": "u2", "name": "b", "dept_id_list": "1,2", "active": False}]}})]),
    "dept-get": (11, 2, 1, "", [(200, {"errcode": 0, "result": {"dept_id": 2, "name": "研发", "parent_id": 1, "order": 5, "dept_manager_userid_list": ["u1"]}})]),
    "listsub": (12, 1, 1, "", [(200, {"errcode": 0, "result": [{"dept_id": 2, "name": "a", "parent_id": 1}, {"dept_id": "3", "name": "b", "parent_id": "1"}]})]),
    "throttled-then-ok": (12, 1, 1, "", [(200, {"errcode": 90018, "errmsg": "throttled"}), (200, {"errcode": 0, "result": []})]),
    "ip-whitelist": (8, 0, 1, "u1", [(200, {"errcode": 60020, "errmsg": "访问ip不在白名单之中,request ip=203.0.113.9 appKey(dingappkey123)"})]),
    "token-invalid": (8, 0, 1, "u1", [(200, {"errcode": 40014, "errmsg": "不合法的access_token"}), (200, {"errcode": 0, "result": {"userid": "u1"}})]),
    "punish": (11, 1, 1, "", [(200, {"punish": "deny", "errcode": 0})]),
    "new-api-error": (14, 0, 1, "un1", [(403, {"code": "Forbidden.AccessDenied.AccessTokenPermissionDenied", "message": "没有调用该接口的权限", "requestid": "r1", "accessdenieddetail": {"requiredScopes": ["qyapi_get_member"]}})]),
    "todo-create": (13, 20, 1, "s1", [(200, {"id": "task1", "sourceId": "s1"})]),
    "todo-exists": (13, 20, 1, "s1", [(400, {"code": "param.sourceId.duplicate", "message": "duplicate"}), (200, {"id": "task1"})]),
    "todo-complete": (15, 0, 1, "t1", [(200, {"result": True}), (404, {"code": "todo.task.notExist", "message": "x"})]),
    "message": (16, 1000001, 1, "u1", [(200, {"errcode": 0, "task_id": 123456, "request_id": "r"})]),
    "http-500-html": (1, 0, 0, "", [(500, "<html>busy</html>")]),
    "empty-503": (2, 0, 0, "", [(503, "")]),
}
for k, (which, number, tokens, text, answers) in ANS.items():
    parts = []
    for status, body in answers:
        b = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        parts.append(f"{status}\n{b}")
    put("dingtalk_responses", k, f"{which} {number} {tokens}\n{text}\n" + "\n---\n".join(parts))

# ---- sync_checkpoint: flags, ckpt, dq0, dq1, syncd, syncm, syncdi1, syncmi1, answers
def state(**kw):
    s = dict(pass_=0, attempt=0, phase="done", known=0, detailed=0, expanded=0, reported=0, walk=0,
             cursor=0, members_seen=0, sweep=0, sweep_from=0, throttled=0)
    s.update(kw)
    s["pass"] = s.pop("pass_")
    return s
dept = lambda i, p: {"dept": {"corp_id": "dingcorp123", "dept_id": i, "parent_id": p, "name": f"d{i}", "order": None}, "gone": False}
mrec = {"slot": 1, "base": {"present": True, "seen": 1, "depts": [1]}, "tag": 3, "new": {"present": False, "seen": 2, "depts": []}}
drec = {"slot": 1, "base": {"present": True, "seen": 1, "managers": ["u1"]}, "tag": None, "new": {"present": True, "seen": 2, "managers": []}}
listsub = json.dumps({"errcode": 0, "result": [{"dept_id": 2, "name": "a", "parent_id": 1}]})
users = json.dumps({"errcode": 0, "result": {"has_more": False, "next_cursor": 0, "list": [{"userid": "u1", "name": "a", "dept_id_list": [1, 2]}], "dept_id": 2, "name": "a", "parent_id": 1}})
answers = f"200\n{listsub}\n-- \n200\n{users}"
CK = {
    "fresh": ("0", None),
    "acked-steps": ("21 0 0 0 0", None),
    "members": ("5 0 0 4 4 1 1", {"version": 3, "cur": state(pass_=1, attempt=4, phase="members", known=2, detailed=2, expanded=2, reported=2, walk=1, members_seen=1), "prev": state(pass_=1, attempt=3, phase="tree", known=2), "void": [[2, 2]]}),
    "sweep-members": ("0 0 0 5 5 1 1", {"version": 4, "cur": state(pass_=1, attempt=5, phase="sweep_members", known=2, detailed=2, expanded=2, reported=2, walk=2, sweep=1, sweep_from=5), "prev": None, "void": []}),
    "sweep-depts": ("0 0 0 6 6 1 1", {"version": 5, "cur": state(pass_=2, attempt=6, phase="sweep_depts", known=1, detailed=1, expanded=1, reported=1, walk=1, sweep=1, sweep_from=6, throttled=2), "prev": None, "void": [[1, 1], [3, 4]]}),
    "tree": ("1 0 0 2 2", {"version": 1, "cur": state(pass_=1, attempt=2, phase="tree", known=2, detailed=1, expanded=1), "prev": None, "void": []}),
    "done": ("2 0 0 9 9 1 1", {"version": 9, "cur": state(pass_=3, attempt=9, phase="done", known=2, detailed=2, expanded=2, reported=2, walk=2, members_seen=1, sweep=2, sweep_from=8), "prev": state(pass_=3, attempt=8, phase="sweep_depts"), "void": []}),
    "unreadable": ("0 0 0 1 1", "{\"version\":"),
}
for k, (flags, ck) in CK.items():
    secs = [flags,
            "" if ck is None else (ck if isinstance(ck, str) else json.dumps(ck)),
            json.dumps(dept(1, None)), json.dumps(dept(2, 1)), json.dumps(drec), json.dumps(mrec),
            "1", "u1", answers]
    put("sync_checkpoint", k, "\n--\n".join(secs))

# ---- tickets_cookies: ticket, cookie, query, stored bytes
T = "00112233445566778899aabbccddeeff0011223344556677"
ident = {"corp_id": "dingcorp123", "userid": "u1", "unionid": "un1", "name": "n", "dept_ids": [1], "is_admin": False, "admin_level": 0, "via": "qr"}
TK = {
    "live-ticket": (T, "dd_login=abc; other=1", f"state={T}&authCode=c", json.dumps({"exp": 1800000000000, "v": ident})),
    "expired-ticket": (T, "", "", json.dumps({"exp": 1, "v": ident})),
    "qr-state": ("x", f"dd_login={T}", f"state={T}&authCode=code1", json.dumps({"exp": 1800000000000, "v": {"corp_id": "dingcorp123", "binding": T, "return_to": "/f"}})),
    "qr-choice": ("x", f" dd_login = {T} ;a=b", f"choice={T}&corp=dingcorp123", json.dumps({"exp": 1800000000000, "v": {"binding": T, "unionid": "un1", "return_to": "/f", "members": [["dingcorp123", "u1"], ["ding2", "u9"]]}})),
    "cookies": ("", "a=1;;=;dd_login;dd_login=; dd_login=2", "a&&=&b=%zz&state=%F0%9F%98%80", "null"),
}
for k, v in TK.items():
    put("tickets_cookies", k, "\n".join(v))

# ---- settings (arbitrary-encoded) and typed_inputs: small byte seeds; libFuzzer grows them.
put("settings", "empty", b"")
put("settings", "valid-start", bytes([0x01]))
put("typed_inputs", "empty", b"")
for i in range(13):
    put("typed_inputs", f"op{i}", bytes([i, 0, 0, 0, 0, 0, 0, 0, 1, 1]))
