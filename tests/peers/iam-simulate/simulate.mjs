// Test peer: evaluates IAM requests with @cloud-copilot/iam-simulate, an IAM policy
// evaluator independent of Custody. One JSON request per line on stdin:
//   {"id": 7, "policy": {...}, "action": "s3:GetObject", "resource": "arn:...", "context": {...}}
// one JSON answer per line on stdout, in order:
//   {"id": 7, "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "error", "error": "..."}
// The principal is a user of the resource's account, and the resource policy (for services
// that require one, such as a KMS key policy) delegates to the account's IAM policies, as
// AWS's default key policy does: so the identity policy alone decides.
import { createInterface } from 'node:readline'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const ACCOUNT = '111122223333'
const DELEGATE_TO_IAM = {
  Version: '2012-10-17',
  Statement: [
    { Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: '*', Resource: '*' },
  ],
}
const out = []
const flush = () => {
  if (out.length) {
    process.stdout.write(out.join(''))
    out.length = 0
  }
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue
  const req = JSON.parse(line)
  let answer
  try {
    const r = await runSimulation(
      {
        identityPolicies: [{ name: 'grant', policy: req.policy }],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: DELEGATE_TO_IAM,
        request: {
          action: req.action,
          principal: `arn:aws:iam::${ACCOUNT}:user/agent`,
          resource: { accountId: ACCOUNT, resource: req.resource },
          contextVariables: req.context ?? {},
        },
      },
      {},
    )
    answer =
      r.resultType === 'error'
        ? { id: req.id, result: 'error', error: JSON.stringify(r.errors) }
        : { id: req.id, result: r.overallResult }
  } catch (e) {
    answer = { id: req.id, result: 'error', error: String(e && e.message ? e.message : e) }
  }
  out.push(JSON.stringify(answer) + '\n')
  if (out.length >= 256) flush()
}
flush()
