import { renderEvent } from '../events.ts'
import { listResponse } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Router } from '../router.ts'

/** `GET /v1/events`: every event the account produced, newest first, filterable by type. */
export function registerEventRoutes(router: Router): void {
  router.get('/v1/events', ({ state, params }) => {
    const type = params.string('type')
    const types = params.strings('types')
    return listResponse({
      params,
      url: '/v1/events',
      objectName: 'event',
      records: state.events.records.values(),
      filter: (record) =>
        (type === undefined || matchesType(record.type, type)) &&
        (types.length === 0 || types.some((pattern) => matchesType(record.type, pattern))),
      render: renderEvent,
    })
  })
  router.get('/v1/events/:id', ({ state, pathParam }) =>
    renderEvent(requireRecord(state.events.records, 'event', pathParam('id'))),
  )
}

/** `charge.succeeded`, or a wildcard such as `charge.*`. */
function matchesType(type: string, pattern: string): boolean {
  return pattern.endsWith('.*') ? type.startsWith(pattern.slice(0, -1)) : type === pattern
}
